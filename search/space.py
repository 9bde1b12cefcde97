"""Search spaces: a YAML file -> a validated :class:`SearchSpace` -> an Optuna define-by-run function.

    recipe: dinov2_probe              # a registered recipe
    metric: val_dice                  # default val_dice; a list for multi-objective (nsga2)
    mode: max                         # max | min (a list beside a metric list)
    data: /data/EchoNet-Dynamic       # optional; `lvsearch run --data` overrides
    fixed: {backbone: tiny, epochs: 4}
    params:
      lr: {type: loguniform, low: 1.0e-4, high: 1.0e-1}
      optimizer: {type: choice, values: [sgd, adamw]}
      momentum: {type: uniform, low: 0.5, high: 0.99, when: {optimizer: sgd}}
    search: {sampler: tpe, scheduler: asha, samples: 16, concurrency: 2, time_budget_s: 3600, seed: 0}
    resources: {cpu: 1, gpu: 0.25}

Everything is checked before anything starts; an error names the file and the field. Parameter
names are the recipe's config keys, so they are also the MLflow param names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from lvseg.config import ConfigError, config_keys, parse_config, yaml_number
from lvseg.recipes import RECIPES, get_recipe
from search.results import TRIAL_NUMBER
from search.samplers import SAMPLERS, SCHEDULERS

DISTRIBUTIONS = ("uniform", "loguniform", "int", "logint", "choice")
TOP_KEYS = {"recipe", "metric", "mode", "data", "fixed", "params", "search", "resources", "description"}
SEARCH_DEFAULTS: dict[str, Any] = dict(sampler="tpe", scheduler="asha", samples=16, concurrency=2,
                                       time_budget_s=None, seed=0, grace_period=1, reduction_factor=2,
                                       max_failures=3)  # retries of a trial whose worker died
RESOURCE_DEFAULTS: dict[str, float] = dict(cpu=1, gpu=0)
DEFAULT_METRIC, DEFAULT_MODE = "val_dice", "max"


class SpaceError(ValueError):
    """A search space that cannot run; the message names the file and the field."""


@dataclass(frozen=True)
class Param:
    """One searched config key. ``when`` maps earlier choice params to the value(s) that enable it."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    values: tuple[Any, ...] = ()
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def suggest(self, trial: Any) -> Any:
        """Draw this parameter from an Optuna trial (define-by-run)."""
        if self.type == "choice":
            return trial.suggest_categorical(self.name, list(self.values))
        if self.type in ("int", "logint"):
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.type == "logint")
        return trial.suggest_float(self.name, self.low, self.high, log=self.type == "loguniform")

    def active(self, sampled: Mapping[str, Any]) -> bool:
        return all(sampled.get(key) in allowed for key, allowed in self.when.items())

    def describe(self) -> str:
        """The distribution for people: ``loguniform 0.0001..0.1``, ``choice sgd|adam``, with its
        condition (``when optimizer=sgd``)."""
        text = (f"{self.type} {'|'.join(map(str, self.values))}" if self.type == "choice"
                else f"{self.type} {self.low:g}..{self.high:g}")
        conditions = " ".join(f"{k}={'|'.join(map(str, v))}" for k, v in self.when.items())
        return f"{text} when {conditions}" if conditions else text

    def examples(self) -> list[Any]:
        """Values that span the parameter: its bounds, or every choice."""
        if self.type == "choice":
            return list(self.values)
        cast = int if self.type in ("int", "logint") else float
        return [cast(self.low), cast(self.high)]


@dataclass(frozen=True)
class SearchSpace:
    source: str
    recipe: str
    metric: tuple[str, ...]
    mode: tuple[str, ...]
    fixed: dict[str, Any]
    params: tuple[Param, ...]
    search: dict[str, Any]
    resources: dict[str, float]
    data: str | None = None
    text: str = ""
    max_epochs: int = 1  # the most epochs a trial can run (the schedulers' max_t), from the recipe

    @property
    def multi_objective(self) -> bool:
        return len(self.metric) > 1

    def define_by_run(self, defaults: Mapping[str, Any] | None = None) -> DefineByRun:
        """Optuna define-by-run function: draws the active params, returns the fixed values
        (``defaults`` fill in run settings the space does not fix, such as ``threads``)."""
        return DefineByRun(self.params, {"recipe": self.recipe, **(defaults or {}), **self.fixed})

    def grid(self) -> dict[str, list[Any]]:
        return {p.name: list(p.values) for p in self.params}

    @property
    def grid_size(self) -> int:
        return math.prod(len(p.values) for p in self.params)


@dataclass(frozen=True)
class DefineByRun:
    """A picklable define-by-run function (Tune checkpoints its searcher with pickle)."""

    params: tuple[Param, ...]
    constants: dict[str, Any]

    def __call__(self, trial: Any) -> dict[str, Any]:
        sampled: dict[str, Any] = {}
        for param in self.params:
            if param.active(sampled):
                sampled[param.name] = param.suggest(trial)
        return {**self.constants, TRIAL_NUMBER: trial.number}


def load_space(path: str | Path) -> SearchSpace:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"search space {path} not found")
    text = path.read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpaceError(f"{path}: not valid YAML ({error})") from error
    return parse_space(raw, str(path), text)


def parse_space(raw: Any, source: str = "space", text: str = "", against_recipe: bool = True) -> SearchSpace:
    """A validated space. ``against_recipe=False`` checks its structure only, not that today's
    recipe takes its keys and values (:func:`stored_space`)."""
    if not isinstance(raw, Mapping):
        raise SpaceError(f"{source}: expected a mapping at the top level")
    _no_unknown(source, "top level", raw, TOP_KEYS)
    recipe = raw.get("recipe")
    if recipe not in RECIPES:
        raise SpaceError(f"{source}: recipe: {recipe!r} is not a registered recipe; known: {', '.join(RECIPES)}")
    accepted = config_keys(recipe)
    metric, mode = _objectives(source, raw)
    fixed = dict(raw.get("fixed") or {})
    accepted -= {"recipe", "data"}  # the recipe is named once; data is the top-level `data:`
    if not against_recipe:
        accepted |= set(fixed) | set(raw.get("params") or {})
    _no_unknown(source, "fixed", fixed, accepted)
    params = tuple(_param(source, name, spec) for name, spec in (raw.get("params") or {}).items())
    _no_unknown(source, "params", {p.name: 1 for p in params}, accepted)
    both = sorted(set(fixed) & {p.name for p in params})
    if both:
        raise SpaceError(f"{source}: {', '.join(both)}: both fixed and searched; keep one")
    params = _order_by_conditions(source, params)
    search = {**SEARCH_DEFAULTS, **_mapping(source, "search", raw.get("search"))}
    _no_unknown(source, "search", search, set(SEARCH_DEFAULTS))
    resources = {**RESOURCE_DEFAULTS, **_mapping(source, "resources", raw.get("resources"))}
    _no_unknown(source, "resources", resources, set(RESOURCE_DEFAULTS))
    space = SearchSpace(source, recipe, metric, mode, fixed, params, search, resources, raw.get("data"), text)
    _check_search(space)
    if not against_recipe:
        return space
    _check_against_recipe(space)
    return replace(space, max_epochs=_max_epochs(space))


def stored_space(text: str, source: str) -> tuple[SearchSpace, str | None]:
    """The space a search ran with, read back to look at that search (report, sync), and why
    today's recipe would refuse it (None if it would not): a search run before the recipe renamed a
    setting or dropped a choice is still there to be looked at, if no longer to be resumed."""
    raw = yaml.safe_load(text)
    try:
        return parse_space(raw, source, text), None
    except (SpaceError, ConfigError) as error:  # ConfigError: a combination of values (max epochs)
        return parse_space(raw, source, text, against_recipe=False), str(error)


def _mapping(source: str, where: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpaceError(f"{source}: {where}: expected a mapping, got {value!r}")
    return dict(value)


def _no_unknown(source: str, where: str, mapping: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise SpaceError(f"{source}: {where}: unknown key(s) {', '.join(map(str, unknown))}; "
                         f"accepted: {', '.join(sorted(allowed))}")


def _objectives(source: str, raw: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    metric = raw.get("metric", DEFAULT_METRIC)
    mode = raw.get("mode", DEFAULT_MODE)
    metrics = tuple(metric) if isinstance(metric, list) else (metric,)
    modes = tuple(mode) if isinstance(mode, list) else (mode,) * len(metrics)
    if len(metrics) != len(modes):
        raise SpaceError(f"{source}: mode: {len(modes)} mode(s) for {len(metrics)} metric(s)")
    bad = [m for m in modes if m not in ("max", "min")]
    if bad:
        raise SpaceError(f"{source}: mode: {bad[0]!r} is not max or min")
    return metrics, modes


def _param(source: str, name: str, spec: Any) -> Param:
    where = f"{source}: params.{name}"
    if not isinstance(spec, Mapping):
        raise SpaceError(f"{where}: expected a mapping with a `type`, got {spec!r}")
    _no_unknown(source, f"params.{name}", spec, {"type", "low", "high", "values", "when"})
    kind = spec.get("type")
    if kind not in DISTRIBUTIONS:
        raise SpaceError(f"{where}.type: {kind!r} is not one of {', '.join(DISTRIBUTIONS)}")
    when = {k: tuple(v) if isinstance(v, list) else (v,) for k, v in _mapping(where, "when", spec.get("when")).items()}
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise SpaceError(f"{where}.values: a choice needs a non-empty list of values")
        return Param(name, kind, values=tuple(values), when=when)
    low, high = (_bound(where, key, spec.get(key)) for key in ("low", "high"))
    if not low < high:
        raise SpaceError(f"{where}: low ({low}) must be below high ({high})")
    if kind in ("loguniform", "logint") and low <= 0:
        raise SpaceError(f"{where}.low: a log scale needs low > 0, got {low}")
    if kind in ("int", "logint") and not (float(low).is_integer() and float(high).is_integer()):
        raise SpaceError(f"{where}: int bounds must be whole numbers, got {low}..{high}")
    return Param(name, kind, float(low), float(high), when=when)


def _bound(where: str, key: str, value: Any) -> float | int:
    """A param's ``low`` or ``high``; "1e-4" (a string to safe_load) is the number it means, as in
    recipe configs."""
    value = yaml_number(value)
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise SpaceError(f"{where}.{key}: expected a finite number, got {value!r}")
    return value


def _order_by_conditions(source: str, params: tuple[Param, ...]) -> tuple[Param, ...]:
    """Check every ``when`` and order the params so that each comes after those it depends on
    (file order otherwise): a define-by-run function must draw a parent before its child."""
    by_name = {p.name: p for p in params}
    for param in params:
        for key, allowed in param.when.items():
            parent = by_name.get(key)
            if parent is None or parent.type != "choice":
                raise SpaceError(f"{source}: params.{param.name}.when: {key!r} must be a choice param")
            stray = [v for v in allowed if v not in parent.values]
            if stray:
                raise SpaceError(f"{source}: params.{param.name}.when.{key}: {stray[0]!r} is not among "
                                 f"{key}'s values {list(parent.values)}")
    ordered: list[Param] = []
    placed: set[str] = set()
    while len(ordered) < len(params):
        ready = [p for p in params if p.name not in placed and set(p.when) <= placed]
        if not ready:
            stuck = sorted(p.name for p in params if p.name not in placed)
            raise SpaceError(f"{source}: params: conditions form a cycle among {', '.join(stuck)}")
        ordered.append(ready[0])
        placed.add(ready[0].name)
    return tuple(ordered)


def _check_search(space: SearchSpace) -> None:
    search, where = space.search, f"{space.source}: search"
    if search["sampler"] not in SAMPLERS:
        raise SpaceError(f"{where}.sampler: {search['sampler']!r} is not one of {', '.join(SAMPLERS)}")
    if search["scheduler"] not in SCHEDULERS:
        raise SpaceError(f"{where}.scheduler: {search['scheduler']!r} is not one of {', '.join(SCHEDULERS)}")
    for key, least in (("samples", 1), ("concurrency", 1), ("grace_period", 1), ("reduction_factor", 1),
                       ("max_failures", 0)):
        if not isinstance(search[key], int) or isinstance(search[key], bool) or search[key] < least:
            raise SpaceError(f"{where}.{key}: expected a whole number >= {least}, got {search[key]!r}")
    if space.multi_objective and search["sampler"] != "nsga2":
        raise SpaceError(f"{where}.sampler: several metrics need the nsga2 sampler")
    if space.multi_objective and search["scheduler"] != "fifo":
        raise SpaceError(f"{where}.scheduler: early stopping judges one metric; use fifo with several metrics")
    if search["sampler"] == "grid" and any(p.type != "choice" for p in space.params):
        raise SpaceError(f"{where}.sampler: grid needs every param to be a choice")
    for key, value in space.resources.items():
        if not isinstance(value, int | float) or value < 0:
            raise SpaceError(f"{space.source}: resources.{key}: expected a number >= 0, got {value!r}")


def _check_against_recipe(space: SearchSpace) -> list[tuple[dict[str, Any], Any]]:
    """Build a config with the fixed values and, one at a time, every choice and bound of every
    param: a value the recipe would reject fails here, before any trial starts; and so does a
    `metric:` that some of those configs would not report."""
    base = {"recipe": space.recipe, **space.fixed}
    try:
        configs = [(_set_by_space(space, space.fixed), parse_config(base))]
    except ConfigError as error:
        raise SpaceError(f"{space.source}: fixed: {error}".replace("config: ", "")) from None
    for param in space.params:
        for value in param.examples():
            try:
                configs.append(({param.name: value}, parse_config({**base, param.name: value})))
            except ConfigError as error:
                message = str(error).replace("config: ", "")
                raise SpaceError(f"{space.source}: params.{param.name}: value {value!r}: {message}") from None
    _check_metrics(space, configs)
    _check_device(space, configs)
    return configs


def _max_epochs(space: SearchSpace) -> int:
    """The most epochs a drawn trial can run, by the recipe's count: over configs with every param
    at its first example value and then, one param at a time, at each of its examples."""
    recipe = get_recipe(space.recipe)
    first = {"recipe": space.recipe, **space.fixed, **{p.name: p.examples()[0] for p in space.params}}
    drawn = [first] + [{**first, p.name: value} for p in space.params for value in p.examples()]
    return max(recipe.epochs(parse_config(config)) for config in drawn)


def _check_device(space: SearchSpace, configs: list[tuple[dict[str, Any], Any]]) -> None:
    """Ray hides every GPU from a trial that asks for none: `device: cuda` would fail every trial."""
    if space.resources["gpu"] > 0:
        return
    for _, config in configs:
        if getattr(config, "device", None) == "cuda":
            where = "fixed.device" if "device" in space.fixed else "params.device"
            raise SpaceError(f"{space.source}: {where}: cuda needs resources.gpu > 0 (Ray hides GPUs from "
                             f"trials that ask for none); use device: auto to fall back to the CPU")


def _set_by_space(space: SearchSpace, values: Mapping[str, Any]) -> dict[str, Any]:
    """The fixed values that differ from the recipe's defaults."""
    defaults = parse_config({"recipe": space.recipe}).to_dict()
    return {k: v for k, v in values.items() if defaults.get(k) != v}


def _check_metrics(space: SearchSpace, configs: list[tuple[dict[str, Any], Any]]) -> None:
    """Every objective must be a key the recipe reports for every config the space can draw;
    when the recipe's defaults do report it, the error names the values that take it away."""
    recipe = get_recipe(space.recipe)
    by_default = recipe.metric_keys(parse_config({"recipe": space.recipe}))
    for chosen, config in configs:
        reported = recipe.metric_keys(config)
        for metric in space.metric:
            if metric not in reported:
                which = ", ".join(f"{k}: {v}" for k, v in chosen.items()) if metric in by_default else ""
                raise SpaceError(f"{space.source}: metric: {metric!r} is not reported by {space.recipe}"
                                 f"{' with ' + which if which else ''}; it reports {', '.join(sorted(reported))}")
