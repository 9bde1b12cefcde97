"""Assemble and run a search: Ray (local on loopback, or a cluster), caches warmed once on the driver,
a Tune ``Tuner`` with the Optuna sampler and the scheduler, MLflow parent and child runs."""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from lvseg.embeddings import load_embeddings
from lvseg.features import load_features
from lvseg.framestore import default_cache_dir, load_store
from search import tracking
from search.callbacks import ProgressCallback, TrackingCallback
from search.export import ranked_trials
from search.samplers import PruneAwareOptunaSearch, build_sampler, build_scheduler
from search.space import SearchSpace, parse_space
from search.trainable import TrialContext, run_trial

STATE_FILE = "lvsearch.json"
STORAGE_DEFAULT = "lvsearch-runs"


def default_storage() -> Path:
    """``$LVSEARCH_STORAGE``, else ``./lvsearch-runs``: where Tune keeps each search's state."""
    return Path(os.environ.get("LVSEARCH_STORAGE") or Path.cwd() / STORAGE_DEFAULT).resolve()


@dataclass(frozen=True)
class SearchState:
    """Everything `resume`, `list` and `export` need to find a search again (saved as JSON)."""

    name: str
    space_file: str
    space_text: str
    data_root: str
    cache_dir: str
    tracking_uri: str
    parent_run_id: str
    samples: int
    allow_missing: bool = False

    def save(self, storage: Path) -> None:
        folder = storage / self.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / STATE_FILE).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, storage: Path, name: str) -> SearchState:
        path = storage / name / STATE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no search {name!r} under {storage} (looked for {path})")
        return cls(**json.loads(path.read_text()))


def init_ray(address: str | None, temp_dir: str | None = None) -> None:
    """Join ``address``, or start a local Ray sized to this machine with every service on loopback."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, logging_level="WARNING")
        return
    # Local Ray binds every service to 127.0.0.1 only with this set (PITFALLS.md, 5). Ray reads it
    # when imported, so the already-imported constant is switched too; child processes inherit
    # the variable. Only here: a cluster driver must advertise its real address.
    from ray._private import ray_constants

    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, dashboard_host="127.0.0.1",
             logging_level="WARNING", configure_logging=True, _temp_dir=temp_dir)


def warm_caches(space: SearchSpace, state: SearchState) -> str:
    """Build the frame store and (probe) every feature cache the space can ask for, once, here.
    Returns the frame store's hash."""
    store = load_store(state.data_root, state.cache_dir, state.allow_missing)
    if space.recipe not in ("dinov2_probe", "sam_prompts"):
        return store.hash
    from lvseg.config import CONFIGS

    defaults = CONFIGS[space.recipe]

    def options(key: str) -> list[Any] | None:
        if key in space.fixed:
            return [space.fixed[key]]
        param = next((p for p in space.params if p.name == key), None)
        if param is None:
            return [getattr(defaults, key)]
        return list(param.values) if param.type == "choice" else None

    keys = ("backbone", "image_size", "layers") if space.recipe == "dinov2_probe" else ("model", "checkpoint")
    combos = [options(k) for k in keys]
    if any(c is None for c in combos):
        return store.hash  # a continuous knob: each node builds what its trials ask for, under the lock
    for combo in itertools.product(*combos):
        if space.recipe == "dinov2_probe":
            load_features(store, *combo)
        else:
            load_embeddings(store, *combo)
    return store.hash


def _tuner(space: SearchSpace, state: SearchState, storage: Path, threads: int):
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    context = TrialContext(state.name, state.data_root, state.cache_dir, state.allow_missing, state.tracking_uri,
                           state.parent_run_id, space.metric, space.mode, tuple(p.name for p in space.params))
    trainable = tune.with_resources(tune.with_parameters(run_trial, context=context),
                                    {"cpu": space.resources["cpu"], "gpu": space.resources["gpu"]})
    metric = list(space.metric) if space.multi_objective else space.metric[0]
    mode = list(space.mode) if space.multi_objective else space.mode[0]
    searcher = PruneAwareOptunaSearch(space=space.define_by_run({"threads": threads}), metric=metric, mode=mode,
                                      sampler=build_sampler(space))
    tune_config = tune.TuneConfig(
        search_alg=ConcurrencyLimiter(searcher, max_concurrent=space.search["concurrency"]),
        scheduler=build_scheduler(space), num_samples=state.samples, reuse_actors=True,
        time_budget_s=space.search["time_budget_s"], metric=space.metric[0], mode=space.mode[0])
    run_config = tune.RunConfig(
        name=state.name, storage_path=str(storage), verbose=0,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=[TrackingCallback(state.tracking_uri, state.parent_run_id, state.name),
                   ProgressCallback(space.metric[0])])
    return trainable, tune.Tuner(trainable, tune_config=tune_config, run_config=run_config), searcher


def run_search(space: SearchSpace, data: str | None = None, name: str | None = None, samples: int | None = None,
               tracking_uri: str | None = None, storage: Path | None = None, address: str | None = None,
               cache_dir: Path | None = None, allow_missing: bool = False) -> dict[str, Any]:
    """Run a whole search; returns its summary (see :func:`summarise`)."""
    storage = (storage or default_storage()).resolve()
    name = name or f"{Path(space.source).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (storage / name).exists():
        raise FileExistsError(f"a search named {name!r} exists under {storage}: `lvsearch resume {name}` "
                              f"continues it; pick another --name for a new one")
    root = data or space.data
    if root is None:
        raise ValueError(f"{space.source}: no data folder: pass --data ROOT or set `data:` in the space")
    uri = tracking_uri or tracking.default_tracking_uri()
    mlflow = tracking.client(uri)
    parent = tracking.start_search_run(mlflow, uri, name, {
        "recipe": space.recipe, "sampler": space.search["sampler"], "scheduler": space.search["scheduler"],
        "metric": ",".join(space.metric), "mode": ",".join(space.mode)}, space.text, space.source)
    samples = samples or space.search["samples"]
    if space.search["sampler"] == "grid" and samples > space.grid_size:
        print(f"grid sampler: {space.grid_size} grid points, so {space.grid_size} trials instead of {samples}")
        samples = space.grid_size
    state = SearchState(name, space.source, space.text, str(Path(root).resolve()),
                        str(Path(cache_dir or default_cache_dir()).resolve()), uri, parent, samples, allow_missing)
    state.save(storage)
    print(f"search {name}: {state.samples} trials of {space.recipe} ({space.search['sampler']} sampler, "
          f"{space.search['scheduler']} scheduler), tracking {uri}")
    mlflow.set_tag(parent, "data_hash", warm_caches(space, state))
    init_ray(address)
    _, tuner, searcher = _tuner(space, state, storage, threads=max(1, int(space.resources["cpu"])))
    tuner.fit()
    return _finish(space, state, searcher)


def resume_search(name: str, storage: Path | None = None, address: str | None = None) -> dict[str, Any]:
    """Continue an interrupted search: unfinished and errored trials resume, their MLflow runs too."""
    from ray import tune

    storage = (storage or default_storage()).resolve()
    state = SearchState.load(storage, name)
    space = parse_space(yaml.safe_load(state.space_text), state.space_file, state.space_text)
    init_ray(address)
    trainable, _, _ = _tuner(space, state, storage, threads=max(1, int(space.resources["cpu"])))
    tracking.client(state.tracking_uri).update_run(state.parent_run_id, status="RUNNING")
    tuner = tune.Tuner.restore(str(storage / name), trainable=trainable, resume_unfinished=True, resume_errored=True)
    tuner.fit()
    return _finish(space, state, None)


def _finish(space: SearchSpace, state: SearchState, searcher: PruneAwareOptunaSearch | None) -> dict[str, Any]:
    summary = summarise(space, state)
    if searcher is not None:  # what the Optuna study saw: pruned trials must be PRUNED, not COMPLETE
        trials = searcher._ot_study.get_trials(deepcopy=False)
        summary["optuna"] = dict(Counter(t.state.name for t in trials))
    mlflow = tracking.client(state.tracking_uri)
    counts = {f"trials_{k}": float(v) for k, v in summary["counts"].items()}
    best = summary["rows"][0] if summary["rows"] else None
    if best is not None:
        counts[f"best_{space.metric[0]}"] = best["score"]
        mlflow.set_tag(state.parent_run_id, "best_trial_run_id", best["run_id"])
        mlflow.set_tag(state.parent_run_id, "best_trial", best["name"])
    tracking.log_metrics(mlflow, state.parent_run_id, counts, step=0)
    finished = sum(summary["counts"].values()) - summary["counts"].get("running", 0)
    summary["interrupted"] = finished < state.samples
    mlflow.set_terminated(state.parent_run_id, status="KILLED" if summary["interrupted"] else "FINISHED")
    print(format_table(summary))
    if summary["interrupted"]:
        print(f"search {state.name} stopped after {finished} of {state.samples} trials: "
              f"`lvsearch resume {state.name}` continues it")
    return summary


def summarise(space: SearchSpace, state: SearchState) -> dict[str, Any]:
    """Every trial of the search from MLflow, best first: name, status, score, searched params."""
    rows = ranked_trials(state.tracking_uri, state.parent_run_id, space.metric[0], space.mode[0],
                         [p.name for p in space.params])
    counts: dict[str, int] = {}
    for row in rows:
        kind = row["status"].split(" ")[0].rstrip(":")
        counts[kind] = counts.get(kind, 0) + 1
    return {"name": state.name, "metric": space.metric[0], "rows": rows, "counts": counts}


def format_table(summary: dict[str, Any], limit: int = 20) -> str:
    rows = summary["rows"][:limit]
    optuna = ", ".join(f"{v} {k}" for k, v in sorted(summary.get("optuna", {}).items()))
    lines = [f"search {summary['name']}: " + ", ".join(f"{v} {k}" for k, v in sorted(summary["counts"].items()))
             + (f" (Optuna study: {optuna})" if optuna else ""),
             f"{'rank':>4}  {'best ' + summary['metric']:>16}  {'status':<22} trial (completed trials rank first)"]
    for rank, row in enumerate(rows, 1):
        score = "-" if row["score"] is None else f"{row['score']:.4f}"
        lines.append(f"{rank:>4}  {score:>16}  {row['status']:<22} {row['name']}")
    return "\n".join(lines)
