"""Training configs: typed, validated once, with every default defined here and nowhere else.

A config file is one flat YAML mapping (the format ``lvsearch export`` writes)::

    recipe: baseline
    model: deeplabv3_resnet50
    lr: 1.0e-5
    ...

:func:`parse_config` turns such a mapping into a frozen dataclass, rejecting unknown keys,
ill-typed values and out-of-range values with a message that names them.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lvseg.losses import LOSSES, REDUCTIONS
from lvseg.models.baseline import MODELS
from lvseg.models.dinov2 import PATCH
from lvseg.models.heads import HEADS
from lvseg.optim import OPTIMIZERS, SCHEDULES

BEST_BY = ("val_loss", "val_dice")
DEVICES = ("auto", "cpu", "cuda")
PROBE_LAYERS = (1, 4)


class ConfigError(ValueError):
    """A config that cannot run; the message names the source, the key and the value."""


@dataclass(frozen=True)
class RecipeConfig:
    """Keys every recipe has: which recipe, its seed, where it runs, and the data folder."""

    recipe: str
    seed: int = 0
    device: str = "auto"
    threads: int | None = None     # torch CPU threads; None: torch's choice. Float sums depend on it,
                                   # so bit-exact reproduction of a trial needs the trial's count
    data: str | None = None        # EchoNet folder; `lvseg train --data` overrides

    def __post_init__(self) -> None:
        _choice(self, "device", DEVICES)
        _check(self, "threads", self.threads is None or self.threads >= 1, "must be >= 1 (or null)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainConfig(RecipeConfig):
    """Knobs every trainable recipe shares. ``batch_size`` counts videos: each batch holds their
    ES and ED frames, as the reference's does."""

    optimizer: str = "sgd"
    lr: float = 1e-5
    momentum: float = 0.9          # sgd only
    nesterov: bool = False         # sgd only
    weight_decay: float = 0.0
    batch_size: int = 20
    loss: str = "bce"
    loss_reduction: str = "sum"    # the reference sums BCE over pixels (and averages ES and ED)
    focal_gamma: float = 2.0       # focal only
    schedule: str = "constant"
    warmup_epochs: int = 0
    step_epochs: int = 10          # step only: epochs between decays
    step_gamma: float = 0.1        # step only: decay factor
    epochs: int = 50
    best_by: str = "val_loss"      # the reference keeps the epoch of lowest validation loss
    bn_refresh: bool = False       # recompute BatchNorm statistics over the train set before validating

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice(self, "optimizer", OPTIMIZERS)
        _choice(self, "loss", LOSSES)
        _choice(self, "loss_reduction", REDUCTIONS)
        _choice(self, "schedule", SCHEDULES)
        _choice(self, "best_by", BEST_BY)
        _check(self, "lr", self.lr > 0, "must be > 0")
        _check(self, "momentum", 0 <= self.momentum < 1, "must lie in [0, 1)")
        _check(self, "weight_decay", self.weight_decay >= 0, "must be >= 0")
        _check(self, "batch_size", self.batch_size >= 1, "must be >= 1")
        _check(self, "epochs", self.epochs >= 1, "must be >= 1")
        _check(self, "warmup_epochs", 0 <= self.warmup_epochs < self.epochs, "must lie in [0, epochs)")
        _check(self, "step_epochs", self.step_epochs >= 1, "must be >= 1")
        _check(self, "step_gamma", 0 < self.step_gamma <= 1, "must lie in (0, 1]")
        _check(self, "focal_gamma", self.focal_gamma >= 0, "must be >= 0")


@dataclass(frozen=True)
class BaselineConfig(TrainConfig):
    """The EchoNet reference recipe; the defaults are the reference's own (ECHONET.md)."""

    recipe: str = "baseline"
    model: str = "deeplabv3_resnet50"
    backbone_weights: str | None = None  # local state-dict file for the backbone; None: random init

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice(self, "model", MODELS)


@dataclass(frozen=True)
class ProbeConfig(TrainConfig):
    """Frozen DINOv2 + a trained head. Defaults suit a head on cached features, not the reference."""

    recipe: str = "dinov2_probe"
    backbone: str = "tiny"
    image_size: int = 224
    head: str = "linear"
    layers: int = 1
    optimizer: str = "adamw"
    lr: float = 1e-3
    batch_size: int = 16
    loss_reduction: str = "mean"
    epochs: int = 10
    best_by: str = "val_dice"
    bn_refresh: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice(self, "head", HEADS)
        _choice(self, "layers", PROBE_LAYERS)
        _check(self, "image_size", self.image_size >= PATCH and self.image_size % PATCH == 0,
               f"must be a positive multiple of the patch size {PATCH} (e.g. 224 or 448)")


@dataclass(frozen=True)
class SamConfig(RecipeConfig):
    """Segment Anything prompted per frame: no training, one evaluation of a prompt strategy.

    Coordinates are (x, y) = (column, row) pixels of the stored frame."""

    recipe: str = "sam_prompts"
    model: str = "tiny"               # tiny (random, tests) | vit_b | vit_l | vit_h | random_vit_b
    checkpoint: str | None = None     # SAM checkpoint file for vit_b/l/h (e.g. sam_vit_b_01ec64.pth)
    strategy: str = "seed_one_point"
    offset: float = 10.0              # px beyond the LV wall for background points
    margin: float = 5.0               # px added around boxes
    k: int = 3                        # foreground points (long_axis, k_points)
    m: int = 4                        # background points on a ring (k_points)
    jitter: float = 0.0               # px of Gaussian click noise on every prompt coordinate
    mask_choice: str = "best_score"
    multimask: bool = True
    split: str = "val"
    prompt_model: str | None = None   # from_model: a baseline/probe best.pt whose masks place the prompt

    @property
    def epochs(self) -> int:
        """One evaluation: reported as a single epoch, so schedulers and the search treat it alike."""
        return 1

    def __post_init__(self) -> None:
        super().__post_init__()
        from lvseg.models.sam import SAM_MODELS, needs_checkpoint
        from lvseg.prompts import MASK_CHOICES, STRATEGIES

        _choice(self, "model", SAM_MODELS)
        _choice(self, "strategy", STRATEGIES)
        _choice(self, "mask_choice", MASK_CHOICES)
        _choice(self, "split", ("train", "val", "test"))
        for key in ("offset", "margin", "jitter", "m"):
            _check(self, key, getattr(self, key) >= 0, "must be >= 0")
        _check(self, "k", self.k >= 1, "must be >= 1")
        _check(self, "checkpoint", self.checkpoint is not None or not needs_checkpoint(self.model),
               f"is required for model {self.model} (a SAM checkpoint file, e.g. sam_{self.model}_*.pth)")
        _check(self, "prompt_model", self.prompt_model is not None or self.strategy != "from_model",
               "is required by strategy from_model (a best.pt written by `lvseg train` or a search)")


CONFIGS: dict[str, type[RecipeConfig]] = {"baseline": BaselineConfig, "dinov2_probe": ProbeConfig,
                                          "sam_prompts": SamConfig}


def config_keys(recipe: str) -> set[str]:
    """Every key a config of this recipe accepts."""
    return {f.name for f in dataclasses.fields(_config_class(recipe, "recipe"))}


def parse_config(mapping: Mapping[str, Any], source: str = "config") -> RecipeConfig:
    """Validate a flat mapping into the recipe's config dataclass, or raise ConfigError."""
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{source}: expected a mapping of keys to values, got {type(mapping).__name__}")
    cls = _config_class(mapping.get("recipe"), source)
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(mapping) - set(hints))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) for recipe {cls.recipe}: {', '.join(unknown)}; "
                          f"accepted: {', '.join(sorted(hints))}")
    values = {key: _coerce(source, key, value, hints[key]) for key, value in mapping.items()}
    try:
        return cls(**values)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def load_config(path: str | Path) -> RecipeConfig:
    """Read a YAML config file (safe_load) and validate it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found")
    try:
        mapping = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from error
    return parse_config(mapping or {}, source=str(path))


def _config_class(recipe: object, source: str) -> type[RecipeConfig]:
    if recipe not in CONFIGS:
        raise ConfigError(f"{source}: recipe: {recipe!r} is not a registered recipe; known: {', '.join(CONFIGS)}")
    return CONFIGS[recipe]  # type: ignore[index]


def _coerce(source: str, key: str, value: Any, hint: Any) -> Any:
    """Check a value against its field's type. Ints pass as floats; a float written the YAML 1.1
    way without a dot ("1e-5" is a string to safe_load) is accepted as the number it means."""
    allowed = typing.get_args(hint) or (hint,)
    if value is None and type(None) in allowed:
        return None
    if float in allowed and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if any(isinstance(value, t) and not (t is int and isinstance(value, bool)) for t in allowed if t is not type(None)):
        return value
    names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
    raise ConfigError(f"{source}: {key}: expected {names}, got {value!r} ({type(value).__name__})")


def _choice(config: RecipeConfig, key: str, choices: typing.Iterable[Any]) -> None:
    choices = list(choices)
    value = getattr(config, key)
    if value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")


def _check(config: RecipeConfig, key: str, ok: bool, rule: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {getattr(config, key)!r} {rule}")
