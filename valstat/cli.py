"""`valstat` command line: parse, call the library, print. No logic of its own.

Imports are inside the command functions so `valstat --help` and the analysis commands never
import TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import warnings
from pathlib import Path

from valstat import __version__
from valstat.errors import ValstatError

EPILOG = """examples:
  valstat run --seeds 20                      # built-in digits, default experiment
  valstat run seed_question --data ~/photos --seeds 20 --folds 5
  valstat run my_experiment.toml --set training.learning_rate=1e-4 --dry-run
  valstat stats reports/default
  valstat report reports/default --lang zh
  valstat diagnose training_log.csv --val-size 30
  valstat diagnose training_log.csv --against reports/default --arm batchnorm
  valstat diagnose logs/fit/validation          # TensorBoard event files
  valstat export reports/default --csv exported/
"""


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line and exit 2 (argparse would print the whole usage first)."""

    def error(self, message):
        self.exit(2, f"valstat: error: {message} (see `{self.prog} --help`)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def scheduler_address(text: str) -> str:
    """A Dask scheduler address (tcp://HOST:PORT, or HOST:PORT), checked before anything is
    written; whether a scheduler answers there is found out when the sweep connects."""
    from distributed.comm import registry
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(text)
        if scheme not in registry.backends:
            raise ValueError(f"unknown scheme {scheme!r}")
        if scheme in ("tcp", "tls"):
            parse_host_port(location)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a Dask scheduler address, expected "
                                         f"tcp://HOST:PORT ({error})") from None
    return text


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.3, got {text!r}") from None
    if not 0.0 <= value < 0.9:
        raise argparse.ArgumentTypeError(f"must be in [0, 0.9), got {value}")
    return value


def cmd_run(args) -> int:
    from valstat.config import load_experiment, resolved_toml
    from valstat.engine.device import resolve_device
    from valstat.execute import plan_sweep, run_sweep
    from valstat.progress import sweep_progress

    experiment = load_experiment(args.experiment, {
        "seeds": args.seeds, "folds": args.folds, "epochs": args.epochs,
        "image_size": args.image_size, "val_size": args.val_size, "data": args.data,
        "holdout": args.holdout, "settings": args.set})
    out_dir = Path(args.out) if args.out else Path("reports") / experiment.name
    fused = {"auto": None, "fused": True, "single": False}[args.engine]
    cluster = experiment.cluster
    engine = resolve_device(args.device, fused, cluster.gpus if cluster.kind == "slurm" else 0)
    if args.dry_run:
        if out_dir.exists() and not out_dir.is_dir():
            raise ValstatError(f"cannot create output folder {out_dir}: it is a file; choose another --out")
        plan = plan_sweep(experiment, out_dir, workers=args.workers, verbose=args.verbose,
                          engine=engine, pack_size=args.pack)
        print(resolved_toml(experiment))
        print(_data_line(plan))
        print(f"{_count(plan.planned, 'run')} planned, {plan.stored} already stored in {out_dir}, "
              f"{plan.planned - plan.stored} to train on {_count(plan.workers, 'worker')}; "
              f"{engine.line('would train on', scheduler=args.scheduler)}")
        _print_larger_plan(out_dir, plan.plan_seeds, plan.store_runs, experiment.sweep.seeds)
        if plan.estimate_s is not None:
            per_run = f"{plan.run_s:.1f}" if plan.run_s >= 0.1 else f"{plan.run_s:.2f}"
            print(f"estimated time: {_duration(plan.estimate_s)} ({per_run} s per run, "
                  f"{_timing_source(plan)})")
        elif plan.planned > plan.stored:
            print("estimated time: unknown here (the cluster's GPUs are not on this machine); "
                  "after the first runs are stored, --dry-run uses their times")
        return 0
    terminated = []

    def stop_on_sigterm(signum, frame):
        # `timeout`, `kill` and a SLURM time limit send SIGTERM: stop as Ctrl-C does
        terminated.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        outcome = run_sweep(experiment, out_dir, workers=args.workers, scheduler=args.scheduler,
                            progress=None if args.quiet else sweep_progress(), wait=args.wait,
                            verbose=args.verbose, engine=engine, pack_size=args.pack,
                            announce=lambda: print(f"valstat: {engine.line(scheduler=args.scheduler)}",
                                                   flush=True))
    finally:
        signal.signal(signal.SIGTERM, previous)
    for run_ids, message in outcome.failed.items():
        runs = (f"run {run_ids[0]}" if len(run_ids) == 1
                else f"the {len(run_ids)} runs {', '.join(run_ids)} (one fused pack)")
        print(f"valstat: error: {runs} failed on a worker: {message}", file=sys.stderr)
    if outcome.scheduler_lost:
        print(f"valstat: error: lost the Dask scheduler at {outcome.scheduler_lost}; {outcome.stored} of "
              f"{outcome.planned} runs are stored in {out_dir}. Start the scheduler again and run the "
              "same command: it trains only the runs not stored yet.", file=sys.stderr)
        return 1
    if outcome.interrupted:
        print(f"valstat: interrupted; {outcome.stored} of {outcome.planned} runs are stored in "
              f"{out_dir}. Run the same command again to resume.", file=sys.stderr)
        return 143 if terminated else 130
    failed = sum(len(run_ids) for run_ids in outcome.failed)
    next_step = (f"Next: valstat report {out_dir}" if not failed else
                 "Fix the error above and run the same command again: it trains only the "
                 "runs not stored yet")
    print(f"{_count(len(outcome.finished) + len(outcome.diverged), 'run')} trained, "
          f"{outcome.already_done} already stored, {len(outcome.diverged)} diverged"
          f"{f', {failed} failed' if failed else ''}; "
          f"{outcome.stored}/{outcome.planned} runs in {out_dir}. {next_step}")
    _print_larger_plan(out_dir, outcome.plan_seeds, outcome.store_runs, experiment.sweep.seeds)
    return 1 if outcome.failed else 0


def _print_larger_plan(out_dir: Path, plan_seeds: int, store_runs: int, asked: int) -> None:
    """Say so when the store was planned for more seeds than this command asks for."""
    if plan_seeds > asked:
        print(f"note: {out_dir} was planned for {plan_seeds} seeds and holds "
              f"{_count(store_runs, 'run')}; this command asks for only {_count(asked, 'seed')}, so "
              f"the store's plan and its report keep all {plan_seeds} seeds")


def _count(number: int, noun: str, plural: str | None = None) -> str:
    """'1 run', '3 runs'; '2 classes' with plural="classes"."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def _data_line(plan) -> str:
    """What the dry run would train on: the images found and how each run uses them."""
    dataset = plan.dataset
    uses = "; ".join(f"each run of {', '.join(arms)} uses {train} training, {val} validation "
                     f"and {truth} truth-set images"
                     for (train, val, truth), arms in _arms_by_sizes(plan.images_per_run))
    return (f"data: {_count(dataset['n_images'], 'image')} in "
            f"{_count(len(dataset['class_names']), 'class', 'classes')} "
            f"({dataset['source']}); {uses}")


def _arms_by_sizes(images_per_run: dict) -> list:
    groups: dict = {}
    for arm, sizes in images_per_run.items():
        groups.setdefault(sizes, []).append(arm)
    return [(sizes, arms) for sizes, arms in groups.items()]


def _timing_source(plan) -> str:
    """How the dry run's time per run was found, for its estimate line."""
    if plan.run_s_source == "store":
        return "mean of the stored runs"
    where = (f"on {plan.workers} workers at once" if plan.run_s_source == "measured"
             else "in one process on this machine, not on the cluster's nodes")
    start = f", plus {plan.start_s:.0f} s to start and compile" if plan.start_s >= 0.5 else ""
    return f"timed here from trial runs {where}{start}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def cmd_stats(args) -> int:
    from valstat.store import load_tables
    from valstat.report.stats_text import format_summary
    from valstat.summary import summarize

    tables = load_tables(args.out_dir)
    if tables.runs.empty:
        raise ValstatError(f"the store in {args.out_dir} holds no runs yet")
    summary = summarize(tables.runs, tables.epochs, tables.predictions, tables.meta)
    print(json.dumps(summary.to_dict(), indent=2) if args.json else format_summary(summary, args.lang))
    return 0


def cmd_report(args) -> int:
    from valstat.report import build_report

    index = build_report(args.out_dir, args.output, lang=args.lang)
    print(f"report written to {index}")
    return 0


def cmd_diagnose(args) -> int:
    from valstat.diagnose import diagnose, format_diagnosis
    from valstat.history import read_history

    epochs = read_history(args.history)
    placement, val_size = None, args.val_size
    if args.against:
        from valstat.against import format_placement, place_history

        placement = place_history(epochs, args.against, val_size=args.val_size, arm=args.arm)
        val_size = placement.val_size
    elif args.arm:
        raise ValstatError("--arm needs --against OUT_DIR")
    result = diagnose(epochs, val_size=val_size)
    if args.json:
        payload = result.to_dict()
        if placement is not None:
            payload["against"] = placement.to_dict()
        print(json.dumps(payload, indent=2))
    else:
        text = format_diagnosis(result, lang=args.lang)
        print(text + ("\n" + format_placement(placement, args.lang) if placement is not None else ""))
    if args.report:
        from valstat.report import write_single_run_report

        index = write_single_run_report(epochs, None, val_size, args.report,
                                        lang=args.lang, title=Path(args.history).name,
                                        against=placement, diagnosis=result)
        print(f"report written to {index}", file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_export(args) -> int:
    from valstat.store import export_csv, export_parquet

    written = []
    if args.csv:
        written += export_csv(args.out_dir, args.csv)
    if args.parquet:
        written += export_parquet(args.out_dir, args.parquet)
    for path in written:
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from valstat.config import shipped_experiments

    parser = OneLineParser(prog="valstat", description=(
        "Measure why small-validation-set CNN curves look the way they do: train AlexNet "
        "many times, store every curve, and turn the runs into intervals, tests and figures."),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"valstat {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    run = commands.add_parser("run", help="train AlexNet over seeds and folds; store every curve",
                              epilog="example: valstat run --seeds 20 --out reports/default",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("experiment", nargs="?", help="experiment TOML file, or the name of one "
                     f"shipped with valstat: {', '.join(sorted(shipped_experiments()))} "
                     "(default: default)")
    run.add_argument("--seeds", type=positive_int,
                     help="number of seeds (split/init/order/augment; default: the experiment's)")
    run.add_argument("--folds", type=positive_int,
                     help="cross-validation folds per seed (default: the experiment's)")
    run.add_argument("--epochs", type=positive_int, help="epochs per run (default: the experiment's)")
    run.add_argument("--image-size", type=positive_int,
                     help="input size in pixels, square (default: the experiment's)")
    run.add_argument("--val-size", type=positive_int, help="validation images per run")
    run.add_argument("--data", help="image folder in Keras layout (one subfolder per class); "
                     "default: the built-in digits")
    run.add_argument("--holdout", type=fraction, help="user data: stratified fraction kept "
                     "aside as the truth set (default 0: none)")
    run.add_argument("--out", help="output folder holding the store (default reports/NAME)")
    run.add_argument("--workers", type=positive_int, help="worker processes (default: by "
                     "input size; threads per worker = cores / workers)")
    run.add_argument("--scheduler", type=scheduler_address, help="address of an existing Dask scheduler, "
                     "e.g. tcp://10.0.0.5:8786")
    run.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="override one experiment setting, checked like the TOML file "
                     "(repeatable), e.g. --set training.learning_rate=1e-4")
    run.add_argument("--dry-run", action="store_true", help="print the resolved experiment, "
                     "runs planned and stored and the estimated time; train nothing")
    run.add_argument("--wait", action="store_true", help="if another valstat run is writing "
                     "this store, wait for it instead of exiting")
    run.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"],
                     help="auto (default): a GPU when JAX sees one, else the CPU")
    run.add_argument("--engine", default="auto", choices=["auto", "fused", "single"],
                     help="fused: K runs of an arm as one JAX program (default on a GPU); "
                     "single: one run at a time (default on the CPU, TensorFlow)")
    run.add_argument("--pack", type=positive_int, help="fused engine: runs per pack "
                     "(default: all runs of an arm)")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.add_argument("--verbose", action="store_true", help="let TensorFlow's and Dask's "
                     "own log lines through")
    run.set_defaults(handler=cmd_run)

    stats = commands.add_parser("stats", help="intervals, variance sources and tests per arm",
                                epilog="example: valstat stats reports/default --json")
    stats.add_argument("out_dir", help="output folder of `valstat run`")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.add_argument("--lang", default="en", choices=["en", "zh"], help="language of the text")
    stats.set_defaults(handler=cmd_stats)

    report = commands.add_parser("report", help="HTML report, figures, LaTeX and methods text",
                                 epilog="example: valstat report reports/default --lang zh")
    report.add_argument("out_dir", help="output folder of `valstat run`")
    report.add_argument("-o", "--output", help="destination folder (default OUT_DIR/report)")
    report.add_argument("--lang", default="en", choices=["en", "zh"], help="language")
    report.set_defaults(handler=cmd_report)

    diagnose = commands.add_parser("diagnose", help="analyse one Keras history without retraining",
                                   epilog="example: valstat diagnose log.csv --val-size 30")
    diagnose.add_argument("history", help="Keras CSVLogger CSV, JSON of History.history, or a "
                          "TensorBoard callback's validation/ folder or event file")
    diagnose.add_argument("--val-size", type=positive_int, help="validation images "
                          "(default: inferred from the accuracy values)")
    diagnose.add_argument("--json", action="store_true", help="print JSON")
    diagnose.add_argument("--against", metavar="OUT_DIR", help="place the history among the "
                          "runs of one arm of this store that have the same validation size "
                          "(bands of accuracy, images and epochs widened outward to observed values)")
    diagnose.add_argument("--arm", help="with --against: the arm to compare with; needed when "
                          "the store has several arms with that validation size (their runs are "
                          "different recipes and are never pooled)")
    diagnose.add_argument("--report", help="also write a single-run HTML report to this folder")
    diagnose.add_argument("--lang", default="en", choices=["en", "zh"], help="language of the text and the report")
    diagnose.set_defaults(handler=cmd_diagnose)

    export = commands.add_parser("export", help="write the runs, epochs and predictions tables "
                                 "as CSV or Parquet",
                                 epilog="example: valstat export reports/default --csv out/")
    export.add_argument("out_dir", help="output folder of `valstat run`")
    export.add_argument("--csv", help="destination folder for runs.csv, epochs.csv, "
                        "predictions.csv")
    export.add_argument("--parquet", help="destination folder for .parquet files "
                        "(needs the [parquet] extra)")
    export.set_defaults(handler=cmd_export)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"valstat: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "export" and not (args.csv or args.parquet):
        parser.error("export needs --csv DIR or --parquet DIR")
    warnings.showwarning = _one_line_warning
    try:
        return args.handler(args)
    except ValstatError as error:
        print(f"valstat: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("valstat: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) stopped reading: leave quietly, as the shell's own tools do;
        # stdout goes to devnull so the interpreter's final flush cannot raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
