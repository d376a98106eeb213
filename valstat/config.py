"""Experiment settings: TOML files (shipped ones in valstat/experiments/) plus command-line
overrides (flags and --set).

An experiment has shared sections ([data], [sweep], [training], [schedule], [model]) and optional
arms ([arms.NAME.training], ...) that override them. Arms share seeds and splits, so arm
comparisons are paired.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path

from valstat.augment import is_identity
from valstat.errors import ValstatError

DEFAULT_EXPERIMENT = "default"
SEED_KINDS = ("split", "init", "order", "augment")


@dataclass
class DataConfig:
    source: str = "digits"      # "digits" (built-in) or a folder in Keras layout
    image_size: int = 32        # pixels per side
    val_size: int = 30          # validation images per run
    train_size: int = 430       # built-in data only: training images per run
    truth_size: int = 500       # built-in data only: held-out truth-set images
    holdout: float = 0.0        # user data only: stratified fraction kept as truth set
    data_seed: int = 0          # fixes the built-in sample and the truth set


@dataclass
class SweepConfig:
    seeds: int = 20
    folds: int = 1
    vary: list = field(default_factory=lambda: list(SEED_KINDS))  # seeds that change per seed


@dataclass
class TrainingConfig:
    epochs: int = 30
    batch_size: int = 32
    optimizer: str = "adam"     # adam | sgd | rmsprop
    learning_rate: float = 0.001
    momentum: float = 0.0       # sgd only
    loss: str = "categorical_crossentropy"


@dataclass
class ScheduleConfig:
    kind: str = "reduce_on_plateau"   # reduce_on_plateau | constant
    monitor: str = "val_accuracy"
    factor: float = 0.1
    patience: int = 2
    min_delta: float = 1e-4
    min_lr: float = 0.0


@dataclass
class ModelConfig:
    width: float = 1.0          # multiplier on AlexNet's filter counts (96, 256, 384, 384, 256)
    dense_units: int = 4096
    dropout: float = 0.5
    batch_norm: bool = False


@dataclass
class AugmentConfig:
    """Training-image augmentation, as Keras's ImageDataGenerator names it (valstat.augment)."""

    horizontal_flip: bool = False   # mirror left-right with probability 1/2
    rotation_range: float = 0.0     # degrees: angle uniform in [-r, r]
    width_shift_range: float = 0.0  # fraction of the width: shift uniform in [-w, w]
    height_shift_range: float = 0.0 # fraction of the height
    zoom_range: float = 0.0         # zoom per axis uniform in [1 - z, 1 + z]
    brightness_range: list = field(default_factory=list)  # [low, high] factor; empty: none


@dataclass
class ClusterConfig:
    """Where runs execute; does not change what a run computes (not in the config hash)."""

    kind: str = "local"         # local (LocalCluster, or --scheduler) | slurm (dask-jobqueue)
    jobs: int = 1               # slurm: batch jobs to submit
    cores: int = 8              # slurm: cores per job
    processes: int = 4          # slurm: Dask worker processes per job
    memory: str = "16GB"        # slurm: memory per job
    walltime: str = "04:00:00"  # slurm: time limit per job
    queue: str = ""             # slurm: partition (empty: the site default)
    account: str = ""           # slurm: account to charge (empty: the user default)
    gpus: int = 0               # slurm: GPUs per job (--gres=gpu:N; one JAX worker per GPU)


SECTIONS = {"data": DataConfig, "sweep": SweepConfig, "training": TrainingConfig,
            "schedule": ScheduleConfig, "model": ModelConfig, "augment": AugmentConfig,
            "cluster": ClusterConfig}
ARM_SECTIONS = ("data", "training", "schedule", "model", "augment")
CHOICES = {("training", "optimizer"): ("adam", "sgd", "rmsprop"),
           ("training", "loss"): ("categorical_crossentropy",),
           ("schedule", "kind"): ("reduce_on_plateau", "constant"),
           ("cluster", "kind"): ("local", "slurm"),
           ("schedule", "monitor"): ("val_accuracy", "val_loss")}


@dataclass
class Arm:
    """One configuration of the experiment, fully resolved."""

    name: str
    data: DataConfig
    training: TrainingConfig
    schedule: ScheduleConfig
    model: ModelConfig
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @property
    def augments(self) -> bool:
        return not is_identity(self.augment)

    def settings(self) -> dict:
        """Every setting that changes what a run computes; [augment] only when it augments,
        so experiments without augmentation keep the config hash they had before it existed."""
        settings = {"data": asdict(self.data), "training": asdict(self.training),
                    "schedule": asdict(self.schedule), "model": asdict(self.model)}
        if self.augments:
            settings["augment"] = asdict(self.augment)
        return settings


@dataclass
class Experiment:
    name: str
    description: str
    source_file: str
    sweep: SweepConfig
    arms: list[Arm]
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    settings: list = field(default_factory=list)   # --set KEY=VALUE overrides, as given

    def config_hash(self) -> str:
        """Hash of everything that changes what a run computes (not the number of seeds)."""
        vary = set(self.sweep.vary)
        if not any(arm.augments for arm in self.arms):
            vary.discard("augment")  # the augment seed changes nothing then
        payload = {"folds": self.sweep.folds, "vary": sorted(vary),
                   "arms": {arm.name: arm.settings() for arm in self.arms}}
        text = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> dict:
        return {"experiment": self.name, "description": self.description,
                "source_file": self.source_file, "sweep": asdict(self.sweep),
                "settings": list(self.settings),
                "arms": [arm.name for arm in self.arms],
                "arms_config": {arm.name: arm.settings() for arm in self.arms}}


def _coerce(section: str, key: str, value, default, origin: str):
    kind = type(default)
    where = f"[{section}] {key} in {origin}"
    if kind is bool:
        if not isinstance(value, bool):
            raise ValstatError(f"{where} must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValstatError(f"{where} must be a whole number, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValstatError(f"{where} must be a number, got {value!r}")
        return float(value)
    if kind is list:
        if not isinstance(value, list):
            raise ValstatError(f"{where} must be a list, got {value!r}")
        return list(value)
    if not isinstance(value, str):
        raise ValstatError(f"{where} must be text, got {value!r}")
    allowed = CHOICES.get((section, key))
    if allowed and value not in allowed:
        raise ValstatError(f"{where} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _apply(target, section: str, values, origin: str):
    if not isinstance(values, dict):
        raise ValstatError(f"[{section}] in {origin} must be a table")
    known = {f.name: f for f in fields(target)}
    for key, value in values.items():
        if key not in known:
            raise ValstatError(f"unknown key '{key}' in [{section}] of {origin} "
                            f"(known: {', '.join(known)})")
        setattr(target, key, _coerce(section, key, value, getattr(target, key), origin))
    return target


def shipped_experiments() -> dict:
    """name -> resource of the experiment files shipped inside the package."""
    folder = resources.files("valstat") / "experiments"
    return {entry.name.removesuffix(".toml"): entry for entry in folder.iterdir()
            if entry.name.endswith(".toml")}


def read_experiment_source(name_or_path: str | None) -> tuple[str, str]:
    """(origin, TOML text) of a file path, or of a shipped experiment's name (which wins over a
    file or folder of that name in the working folder: write ./default for such a file)."""
    if name_or_path is None:
        name_or_path = DEFAULT_EXPERIMENT
    path = Path(name_or_path)
    shipped = shipped_experiments()
    if name_or_path in shipped:
        return f"{name_or_path}.toml (shipped)", shipped[name_or_path].read_text(encoding="utf-8")
    if path.is_dir():
        raise ValstatError(f"{name_or_path} is a folder, not an experiment TOML file "
                           f"(shipped experiments: {', '.join(sorted(shipped))})")
    if not path.is_file():
        raise ValstatError(f"experiment file {name_or_path} not found "
                        f"(shipped: {', '.join(sorted(shipped))})")
    try:
        return str(path), path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValstatError(f"{path} is not valid TOML: {error}") from None
    except OSError as error:
        raise ValstatError(f"cannot read {path}: {error.strerror}") from None


def load_experiment(name_or_path: str | None = None, overrides: dict | None = None) -> Experiment:
    """Read an experiment TOML and apply overrides {"seeds": 3, "epochs": 2, ...}."""
    origin, text = read_experiment_source(name_or_path)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValstatError(f"{origin} is not valid TOML: {error}") from None
    if not document:
        raise ValstatError(f"{origin} is empty: it sets nothing to run (`valstat run --dry-run` "
                           "prints the default experiment, a file to start from)")
    top_keys = {"name", "description", "arms", *SECTIONS}
    for key in document:
        if key not in top_keys:
            raise ValstatError(f"unknown key '{key}' in {origin} (known: {', '.join(sorted(top_keys))})")
    base = {name: _apply(cls(), name, document.get(name, {}), origin)
            for name, cls in SECTIONS.items()}
    arm_tables = document.get("arms", {"main": {}})
    if not isinstance(arm_tables, dict) or not arm_tables:
        raise ValstatError(f"[arms] in {origin} must hold at least one [arms.NAME] table")
    arms = []
    for arm_name, arm_values in arm_tables.items():
        if not isinstance(arm_values, dict):
            raise ValstatError(f"[arms.{arm_name}] in {origin} must be a table")
        parts = {}
        for key in arm_values:
            if key not in ARM_SECTIONS:
                raise ValstatError(f"unknown key '{key}' in [arms.{arm_name}] of {origin} "
                                f"(known: {', '.join(ARM_SECTIONS)})")
        for section in ARM_SECTIONS:
            parts[section] = _apply(copy.deepcopy(base[section]), f"arms.{arm_name}.{section}",
                                    arm_values.get(section, {}), origin)
        arms.append(Arm(name=arm_name, **parts))
    stem = Path(name_or_path or DEFAULT_EXPERIMENT).stem
    experiment = Experiment(name=str(document.get("name", stem)),
                            description=str(document.get("description", "")),
                            source_file=origin, sweep=base["sweep"], arms=arms,
                            cluster=base["cluster"])
    if not origin.endswith("(shipped)"):
        _anchor_folders(experiment, Path(origin).parent)
    apply_overrides(experiment, overrides or {})
    apply_settings(experiment, (overrides or {}).get("settings") or [])
    _resolve_folders(experiment, written_for=base["data"].source)
    validate(experiment)
    return experiment


def _anchor_folders(experiment: Experiment, folder: Path) -> None:
    """A relative image folder in an experiment file names a folder beside that file, wherever
    valstat is run from (--data and --set stay relative to the working folder)."""
    builtin = DataConfig().source
    for arm in experiment.arms:
        source = Path(arm.data.source).expanduser()
        if arm.data.source != builtin and not source.is_absolute():
            arm.data.source = str(folder / source)


def _resolve_folders(experiment: Experiment, written_for: str) -> None:
    """Image folders as absolute paths (a store names the folder it was trained on, wherever
    it is read from later); a description written for `written_for` (the file's own source)
    no longer describes other images, so it says what the arms now train on."""
    builtin = DataConfig().source
    for arm in experiment.arms:
        if arm.data.source != builtin:
            arm.data.source = str(Path(arm.data.source).expanduser().resolve())
    sources = {arm.data.source for arm in experiment.arms}
    if written_for == builtin and sources != {builtin}:
        experiment.description = (f"The '{experiment.name}' experiment's arms and settings, "
                                  f"trained on the images in {', '.join(sorted(sources))} "
                                  "instead of the built-in digits.")


def apply_overrides(experiment: Experiment, overrides: dict) -> None:
    """CLI flags win over the file: seeds, folds, epochs, image_size, val_size, data, holdout."""
    if overrides.get("seeds") is not None:
        experiment.sweep.seeds = overrides["seeds"]
    if overrides.get("folds") is not None:
        experiment.sweep.folds = overrides["folds"]
    for arm in experiment.arms:
        if overrides.get("epochs") is not None:
            arm.training.epochs = overrides["epochs"]
        if overrides.get("image_size") is not None:
            arm.data.image_size = overrides["image_size"]
        if overrides.get("val_size") is not None:
            arm.data.val_size = overrides["val_size"]
        if overrides.get("data") is not None:
            arm.data.source = str(overrides["data"])
        if overrides.get("holdout") is not None:
            arm.data.holdout = overrides["holdout"]


def _setting_value(text: str):
    """A --set value read as a TOML value (1e-4, true, [\"init\"], "x"); bare words as text."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def apply_settings(experiment: Experiment, settings: list[str]) -> None:
    """Apply `--set SECTION.KEY=VALUE` (every arm) or `--set arms.NAME.SECTION.KEY=VALUE`,
    checked exactly as the same key in the TOML file would be."""
    arms = {arm.name: arm for arm in experiment.arms}
    for item in settings:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) not in (2, 4) or (len(parts) == 4 and parts[0] != "arms"):
            raise ValstatError(f"--set expects SECTION.KEY=VALUE (e.g. training.learning_rate=1e-4)"
                            f" or arms.NAME.SECTION.KEY=VALUE, got {item!r}")
        section, name = parts[-2], parts[-1]
        if section not in SECTIONS:
            raise ValstatError(f"--set {item}: unknown section '{section}' "
                            f"(known: {', '.join(SECTIONS)})")
        if len(parts) == 4:
            if parts[1] not in arms:
                raise ValstatError(f"--set {item}: no arm '{parts[1]}' (arms: {', '.join(arms)})")
            if section not in ARM_SECTIONS:
                raise ValstatError(f"--set {item}: arms may set only {', '.join(ARM_SECTIONS)}")
            targets = [getattr(arms[parts[1]], section)]
        elif section in ARM_SECTIONS:
            targets = [getattr(arm, section) for arm in experiment.arms]
        else:
            targets = [getattr(experiment, section)]
        for target in targets:
            _apply(target, section, {name: _setting_value(text.strip())}, "--set")
        experiment.settings.append(item)


def _toml_value(value) -> str:
    return json.dumps(value) if isinstance(value, (str, list)) else \
        str(value).lower() if isinstance(value, bool) else repr(value)


def resolved_toml(experiment: Experiment) -> str:
    """The experiment after overrides, as a TOML file that loads back to the same settings."""
    lines = [f"name = {_toml_value(experiment.name)}",
             f"# from {experiment.source_file}; config hash {experiment.config_hash()}"]
    if experiment.settings:
        lines.append(f"# --set {' --set '.join(experiment.settings)}")
    for section, values in (("sweep", asdict(experiment.sweep)),
                            ("cluster", asdict(experiment.cluster))):
        lines += ["", f"[{section}]", *(f"{k} = {_toml_value(v)}" for k, v in values.items())]
    for arm in experiment.arms:
        for section, values in arm.settings().items():
            lines += ["", f"[arms.{arm.name}.{section}]",
                      *(f"{k} = {_toml_value(v)}" for k, v in values.items())]
            if section == "data" and values["source"] != DataConfig().source:
                lines.append("# train_size and truth_size apply to the built-in digits only: "
                             "every image of a folder is used (--holdout keeps a truth set)")
    return "\n".join(lines) + "\n"


def validate(experiment: Experiment) -> None:
    """Refuse settings no run can use, in one line naming the key and where it was read (the
    command-line flags check their own values before this)."""
    origin = experiment.source_file + (" or --set" if experiment.settings else "")
    sweep = experiment.sweep
    if sweep.seeds < 1:
        raise ValstatError(f"[sweep] seeds in {origin} must be at least 1, got {sweep.seeds}")
    if sweep.folds < 1:
        raise ValstatError(f"[sweep] folds in {origin} must be at least 1, got {sweep.folds}")
    unknown = set(sweep.vary) - set(SEED_KINDS)
    if unknown:
        raise ValstatError(f"[sweep] vary in {origin} may only name {', '.join(SEED_KINDS)}; "
                        f"got {', '.join(sorted(unknown))}")
    if experiment.cluster.gpus < 0:
        raise ValstatError(f"[cluster] gpus in {origin} must be 0 or more, got {experiment.cluster.gpus}")
    sources = {arm.data.source for arm in experiment.arms}
    if len(sources) > 1:
        raise ValstatError(f"all arms of an experiment must use the same data source ({origin} "
                           f"names {', '.join(sorted(sources))})")
    for arm in experiment.arms:
        where = f"of arm '{arm.name}' in {origin}"
        if arm.training.epochs < 1:
            raise ValstatError(f"[training] epochs {where} must be at least 1, got {arm.training.epochs}")
        if arm.training.batch_size < 1:
            raise ValstatError(f"[training] batch_size {where} must be at least 1, "
                               f"got {arm.training.batch_size}")
        if arm.training.learning_rate <= 0:
            raise ValstatError(f"[training] learning_rate {where} must be positive, "
                               f"got {arm.training.learning_rate}")
        if arm.data.image_size < 16:
            raise ValstatError(f"[data] image_size {where} must be at least 16 pixels, "
                               f"got {arm.data.image_size}")
        if arm.data.val_size < 2:
            raise ValstatError(f"[data] val_size {where} must be at least 2, got {arm.data.val_size}")
        if not 0.0 <= arm.data.holdout < 0.9:
            raise ValstatError(f"[data] holdout {where} must be a fraction in [0, 0.9), "
                               f"got {arm.data.holdout}")
        if arm.data.holdout and arm.data.source == DataConfig().source:
            raise ValstatError("--holdout keeps part of your own images (--data) aside as a truth "
                               "set; the built-in digits have theirs already (truth_size)")
        _validate_model_and_schedule(arm)
        _validate_augment(arm)


def _validate_model_and_schedule(arm: Arm) -> None:
    """The ranges Keras accepts, checked here so that a bad value is one line before any run."""
    where = f"of arm '{arm.name}'"
    model, schedule = arm.model, arm.schedule
    if model.width <= 0:
        raise ValstatError(f"[model] width {where} must be positive, got {model.width}")
    if model.dense_units < 1:
        raise ValstatError(f"[model] dense_units {where} must be at least 1, got {model.dense_units}")
    if not 0 <= model.dropout < 1:
        raise ValstatError(f"[model] dropout {where} must be a fraction in [0, 1), got {model.dropout}")
    if not 0 <= arm.training.momentum <= 1:
        raise ValstatError(f"[training] momentum {where} must be in [0, 1], "
                           f"got {arm.training.momentum}")
    if schedule.kind == "reduce_on_plateau" and not 0 < schedule.factor < 1:
        raise ValstatError(f"[schedule] factor {where} must be a fraction in (0, 1): the rate "
                           f"is multiplied by it on a plateau; got {schedule.factor}")
    for key in ("patience", "min_delta", "min_lr"):
        if getattr(schedule, key) < 0:
            raise ValstatError(f"[schedule] {key} {where} must be 0 or more, "
                               f"got {getattr(schedule, key)}")


def _validate_augment(arm: Arm) -> None:
    where = f"[augment] of arm '{arm.name}'"
    augment = arm.augment
    if augment.rotation_range < 0 or augment.rotation_range > 180:
        raise ValstatError(f"{where}: rotation_range must be degrees in [0, 180], "
                        f"got {augment.rotation_range}")
    for key in ("width_shift_range", "height_shift_range", "zoom_range"):
        value = getattr(augment, key)
        if not 0 <= value < 1:
            raise ValstatError(f"{where}: {key} must be a fraction in [0, 1), got {value}")
    brightness = augment.brightness_range
    if brightness and (len(brightness) != 2 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in brightness)
            or not 0 < brightness[0] <= brightness[1]):
        raise ValstatError(f"{where}: brightness_range must be [low, high] with 0 < low <= high, "
                        f"got {brightness}")
