"""Progress of a sweep: a rich bar on a terminal, one line per finished run elsewhere."""

from __future__ import annotations

import math
import sys


def sweep_progress(stream=None):
    """The progress object for `stream` (default stdout): a bar if it is a terminal."""
    stream = stream or sys.stdout
    return SweepProgress() if stream.isatty() else LineProgress(stream)


def _best(record) -> float | None:
    values = [row[5] for row in record.epochs if not math.isnan(row[5])]
    return max(values) if values else None


class SweepProgress:
    """rich progress bar fed with finished RunRecords (see execute.run_sweep)."""

    def __init__(self):
        self.best_scores: list[float] = []
        self._progress = None
        self._task = None

    def start(self, total: int, done: int) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self._progress = Progress(
            TextColumn("[bold]runs"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[scores]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn())
        self._progress.start()
        self._task = self._progress.add_task("runs", total=total, completed=done,
                                             scores="best val acc: –")

    def advance(self, record) -> None:
        best = _best(record)
        if best is not None:
            self.best_scores.append(best)
        scores = "best val acc: –"
        if self.best_scores:
            mean = sum(self.best_scores) / len(self.best_scores)
            scores = f"best val acc: mean {mean:.3f}, top {max(self.best_scores):.3f}"
        self._progress.update(self._task, advance=1, scores=scores)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()


class LineProgress:
    """One line per finished run, for logs and pipes (a bar would print nothing until the end)."""

    def __init__(self, stream):
        self.stream = stream
        self.total = self.done = 0

    def start(self, total: int, done: int) -> None:
        self.total, self.done = total, done

    def advance(self, record) -> None:
        self.done += 1
        best = _best(record)
        score = "–" if best is None else f"{best:.3f}"
        print(f"run {record.run['run_id']} {record.run['status']} ({self.done}/{self.total}), "
              f"best val acc {score}, {record.run['wall_s']:.0f} s", file=self.stream, flush=True)

    def stop(self) -> None:
        pass
