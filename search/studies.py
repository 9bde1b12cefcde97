"""Optuna studies that outlive the search process: one per search, in an RDB storage.

Each search's study lives in an Optuna storage (default: ``optuna.db``, a SQLite file beside the
MLflow one; ``--optuna-storage URL`` for another) under the search's name, and is told how every
trial ended (COMPLETE with its value, PRUNED with its last intermediate value, FAIL). So
``optuna-dashboard sqlite:///optuna.db`` shows every search, ``lvsearch resume`` continues the same
study, and a new search can start from what earlier ones learned (:func:`warm_start`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from lvseg.status import Status
from search import tracking
from search.export import run_status
from search.space import Param, SearchSpace

FILE = "optuna.db"
STATES = {"COMPLETE": optuna.trial.TrialState.COMPLETE, "PRUNED": optuna.trial.TrialState.PRUNED,
          "FAIL": optuna.trial.TrialState.FAIL}


def default_storage(tracking_uri: str) -> str:
    """A SQLite file beside the MLflow store when that is a file, else in the working directory."""
    path = tracking.local_path(tracking_uri)
    folder = path.parent if path is not None else Path.cwd()
    return f"sqlite:///{(folder / FILE).resolve()}"


def storage(url: str) -> optuna.storages.BaseStorage:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(url)


def check_free(url: str, name: str) -> None:
    """The storage opens and holds no study of this name (a new search must not join an old study)."""
    try:
        names = {summary.study_name for summary in optuna.get_all_study_summaries(storage(url))}
    except Exception as error:
        raise ConnectionError(f"Optuna storage {url} cannot be opened: {tracking.first_line(error)}") from None
    if name in names:
        raise FileExistsError(f"an Optuna study named {name!r} exists in {url}: pick another --name, or "
                              f"`optuna delete-study --storage {url} --study-name {name}`")


def distribution(param: Param) -> BaseDistribution:
    """The Optuna distribution a space parameter draws from (as its define-by-run suggests it)."""
    if param.type == "choice":
        return CategoricalDistribution(list(param.values))
    if param.type in ("int", "logint"):
        return IntDistribution(int(param.low), int(param.high), log=param.type == "logint")
    return FloatDistribution(param.low, param.high, log=param.type == "loguniform")


def fail_running(study: optuna.Study) -> int:
    """Trials still RUNNING in a study whose search ended (their driver was killed before telling
    it): FAIL, so that samplers do not wait on them. Returns how many."""
    running = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
    for trial in running:
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    return len(running)


def warm_start(study: optuna.Study, space: SearchSpace, uri: str, names: list[str]) -> list[str]:
    """Tell ``study`` every ended trial of the searches ``names`` whose values fit ``space`` (same
    recipe, the same fixed values, searched values inside the new bounds and choices), with its
    value and state, before any suggestion. Returns one line per search, naming what was skipped."""
    mlflow = tracking.open_store(uri)
    lines = []
    for name in names:
        parent = tracking.find_search_run(mlflow, uri, name)
        if parent.data.tags.get("recipe") != space.recipe:
            lines.append(f"warm start: {name} searched recipe {parent.data.tags.get('recipe')}, not {space.recipe}: "
                         f"skipped whole")
            continue
        told, skipped = 0, []
        for run in tracking.trial_runs(mlflow, uri, parent.info.run_id):
            reason = _tell(study, space, mlflow, run)
            told += reason is None
            if reason is not None:
                skipped.append(f"{run.info.run_name}: {reason}")
        shown = "; ".join(skipped[:5]) + (f"; ... {len(skipped) - 5} more" if len(skipped) > 5 else "")
        lines.append(f"warm start: {told} trial(s) of {name} told to the sampler, {len(skipped)} skipped"
                     + (f" ({shown})" if skipped else ""))
    return lines


def _tell(study: optuna.Study, space: SearchSpace, mlflow: Any, run: Any) -> str | None:
    """Add one earlier trial to the study; the reason it does not fit, or None."""
    status = run_status(run)
    state = STATES.get(status.optuna_state or "")
    if state is None:
        return f"it did not end ({status})"
    params = run.data.params
    for key, value in space.fixed.items():
        if params.get(key) != str(value):
            return f"{key} was {params.get(key)}, this space fixes {value}"
    chosen, reason = _fitting(space.params, params)
    if reason is not None:
        return reason
    values = _values(space, run, status)
    if state == optuna.trial.TrialState.COMPLETE and values is None:
        return "it has no score"
    intermediate = _intermediate(space, mlflow, run) if state == optuna.trial.TrialState.PRUNED else {}
    study.add_trial(optuna.trial.create_trial(
        params=chosen, distributions={name: distribution(_param(space, name)) for name in chosen},
        values=values if state == optuna.trial.TrialState.COMPLETE else None, state=state,
        intermediate_values=intermediate))
    return None


def _fitting(params: tuple[Param, ...], logged: dict[str, str]) -> tuple[dict[str, Any], str | None]:
    """The trial's values of the space's params, drawn in the space's order (a conditional one only
    where it is active), or the reason one falls outside the space."""
    chosen: dict[str, Any] = {}
    for param in params:
        if not param.active(chosen):
            continue
        text = logged.get(param.name)
        if text is None:
            return {}, f"no value of {param.name}"
        value = _typed(param, text)
        if value is None:
            return {}, f"{param.name} {text} is not among {list(param.values)}"
        if param.type != "choice" and not param.low <= value <= param.high:
            return {}, f"{param.name} {text} is outside {param.low:g}..{param.high:g}"
        chosen[param.name] = value
    return chosen, None


def _typed(param: Param, text: str) -> Any:
    if param.type == "choice":
        return next((v for v in param.values if str(v) == text), None)
    return int(float(text)) if param.type in ("int", "logint") else float(text)


def _param(space: SearchSpace, name: str) -> Param:
    return next(p for p in space.params if p.name == name)


def _values(space: SearchSpace, run: Any, status: Status) -> list[float] | None:
    values = [run.data.metrics.get(f"best_{metric}") for metric in space.metric]
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    return values


def _intermediate(space: SearchSpace, mlflow: Any, run: Any) -> dict[int, float]:
    return {m.step: m.value for m in mlflow.get_metric_history(run.info.run_id, space.metric[0])
            if math.isfinite(m.value)}
