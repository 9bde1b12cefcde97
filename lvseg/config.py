"""Training configs: typed, validated once, with every default defined in a config dataclass and
nowhere else.

A config file is one flat YAML mapping (the format ``lvsearch export`` writes)::

    recipe: baseline
    model: deeplabv3_resnet50
    lr: 1.0e-5
    ...

Each recipe defines its config dataclass beside itself (``lvseg/recipes/<name>.py``), on the bases
here. :func:`parse_config` turns a mapping into that dataclass, rejecting unknown keys, ill-typed
values and out-of-range values with a message that names them. A recipe's named ``preset`` sets a
group of values at once (keys given next to it win).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lvseg.losses import LOSSES, REDUCTIONS
from lvseg.optim import OPTIMIZERS, SCHEDULES

BEST_BY = ("val_loss", "val_dice")
DEVICES = ("auto", "cpu", "cuda")
RENAMED = {"bn_refresh": "precise_bn (batches of the train split; 0 turns it off)"}


class ConfigError(ValueError):
    """A config that cannot run; the message names the source, the key and the value."""


@dataclass(frozen=True, kw_only=True)
class RecipeConfig:
    """Keys every recipe has: which recipe (and preset), its seed, where it runs, the data folder."""

    recipe: str
    preset: str | None = None      # a named group of values of the recipe (recorded for provenance)
    seed: int = 0
    device: str = "auto"
    threads: int | None = None     # torch CPU threads; None: torch's choice. Float sums depend on it,
                                   # so bit-exact reproduction of a trial needs the trial's count
    data: str | None = None        # EchoNet folder; `lvseg train --data` overrides

    def __post_init__(self) -> None:
        choice(self, "device", DEVICES)
        check(self, "threads", self.threads is None or self.threads >= 1, "must be >= 1 (or null)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
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
    precise_bn: int = 200          # train batches that recompute BatchNorm statistics before each
                                   # validation ("precise BN"); 0 keeps training's running averages
    resident_gb: float | None = None  # inputs kept on the device per split (lvseg.resident); None: a
                                      # safe share of its free memory; 0 streams every batch from disk

    def __post_init__(self) -> None:
        super().__post_init__()
        choice(self, "optimizer", OPTIMIZERS)
        choice(self, "loss", LOSSES)
        choice(self, "loss_reduction", REDUCTIONS)
        choice(self, "schedule", SCHEDULES)
        choice(self, "best_by", BEST_BY)
        check(self, "lr", self.lr > 0, "must be > 0")
        check(self, "momentum", 0 <= self.momentum < 1, "must lie in [0, 1)")
        check(self, "weight_decay", self.weight_decay >= 0, "must be >= 0")
        check(self, "batch_size", self.batch_size >= 1, "must be >= 1")
        check(self, "epochs", self.epochs >= 1, "must be >= 1")
        check(self, "warmup_epochs", 0 <= self.warmup_epochs < self.epochs, "must lie in [0, epochs)")
        check(self, "step_epochs", self.step_epochs >= 1, "must be >= 1")
        check(self, "step_gamma", 0 < self.step_gamma <= 1, "must lie in (0, 1]")
        check(self, "focal_gamma", self.focal_gamma >= 0, "must be >= 0")
        check(self, "precise_bn", self.precise_bn >= 0, "must be >= 0 (0 turns it off)")
        check(self, "resident_gb", self.resident_gb is None or self.resident_gb >= 0,
              "must be >= 0 GB (0 streams every batch), or null for a share of the device's free memory")


def config_keys(recipe: str) -> set[str]:
    """Every key a config of this recipe accepts."""
    return {f.name for f in dataclasses.fields(_recipe(recipe, "recipe").config)}


def parse_config(mapping: Mapping[str, Any], source: str = "config") -> RecipeConfig:
    """Validate a flat mapping into the recipe's config dataclass, or raise ConfigError."""
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{source}: expected a mapping of keys to values, got {type(mapping).__name__}")
    recipe = _recipe(mapping.get("recipe"), source)
    cls = recipe.config
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(mapping) - set(hints))
    if unknown:
        renamed = "".join(f" ({k} is now {RENAMED[k]})" for k in unknown if k in RENAMED)
        raise ConfigError(f"{source}: unknown key(s) for recipe {recipe.name}: {', '.join(unknown)}{renamed}; "
                          f"accepted: {', '.join(sorted(hints))}")
    mapping = {**_preset(recipe, mapping.get("preset"), source), **mapping}
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


def _recipe(name: object, source: str) -> Any:
    from lvseg.recipes import RECIPES  # the recipes define their configs on the bases above

    if name not in RECIPES:
        raise ConfigError(f"{source}: recipe: {name!r} is not a registered recipe; known: {', '.join(RECIPES)}")
    return RECIPES[name]  # type: ignore[index]


def _preset(recipe: Any, name: object, source: str) -> dict[str, Any]:
    if name is None:
        return {}
    if name not in recipe.presets:
        known = ", ".join(recipe.presets) or "none"
        raise ConfigError(f"{source}: preset: {name!r} is not a preset of recipe {recipe.name}; known: {known}")
    return dict(recipe.presets[name])


def yaml_number(value: Any) -> Any:
    """A number written the YAML 1.1 way without a dot ("1e-5" is a string to safe_load) as the
    float it means; anything else as it is."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _coerce(source: str, key: str, value: Any, hint: Any) -> Any:
    """Check a value against its field's type. Ints pass as floats, and so do floats written the
    YAML 1.1 way (:func:`yaml_number`)."""
    allowed = typing.get_args(hint) or (hint,)
    if value is None and type(None) in allowed:
        return None
    if float in allowed:
        value = yaml_number(value)
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if any(isinstance(value, t) and not (t is int and isinstance(value, bool)) for t in allowed if t is not type(None)):
        return value
    names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
    raise ConfigError(f"{source}: {key}: expected {names}, got {value!r} ({type(value).__name__})")


def choice(config: RecipeConfig, key: str, choices: Iterable[Any]) -> None:
    """Raise ConfigError unless ``config.<key>`` is one of ``choices`` (a registry's names)."""
    choices = list(choices)
    value = getattr(config, key)
    if value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")


def check(config: RecipeConfig, key: str, ok: bool, rule: str) -> None:
    """Raise ConfigError naming ``key`` and its value unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}: {getattr(config, key)!r} {rule}")
