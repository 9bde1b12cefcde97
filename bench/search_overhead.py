"""Search orchestration overhead: N tiny trials through `lvsearch` (Ray Tune + Optuna + MLflow,
artifacts included) versus the same N fits one after another in one plain Python process.

Both sides train the same resolved configs (read back from the search's MLflow runs) with one
torch thread each, a FIFO scheduler (no early stopping) and one trial at a time, so the difference
is what the orchestration costs. Searches of N and 2N trials separate the cost each trial adds
(the headline) from the fixed cost of a search, measured directly: from the call to the first
trial's start, and from the last trial's end to the call's return (MLflow's run times are the
trials' own: the journal carries them). Ray's start-up is reported apart. The fixed cost is also
measured in a fresh driver process that starts its own Ray and then runs a search, so that its
trial workers start with that Ray, not long before the search (`lvsearch run` starts Ray later
still: after its tracking store, frame store and caches).

    python bench/search_overhead.py [--trials 24]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from lvseg.config import parse_config
from lvseg.framestore import load_store
from lvseg.recipes import get_recipe
from lvseg.synth import write_synthetic
from search import tracking
from search.prepare import init_ray
from search.runner import run_search
from search.space import parse_space


def space(trials: int) -> dict:
    return {"recipe": "dinov2_probe",
            "fixed": {"backbone": "tiny", "image_size": 112, "epochs": 2, "head": "linear", "loss_reduction": "mean"},
            "params": {"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
                       "batch_size": {"type": "choice", "values": [4, 8]}},
            "search": {"sampler": "random", "scheduler": "fifo", "samples": trials, "concurrency": 1, "seed": 0},
            "resources": {"cpu": 1, "gpu": 0}}


def timed_search(trials: int, name: str, root: Path, store, tmp: Path) -> tuple[int, float, float, float,
                                                                               tuple[float, float, float]]:
    """Run a search of ``trials`` trials, then the same resolved configs in this process.
    Returns (trials, search seconds, plain seconds, steady-state seconds per trial: from the first
    trial run's start to the last one's end in MLflow, divided by the number of trials, and the
    fixed cost: seconds before the first trial started, after the last one ended, and what the
    first trial took beyond the median trial: its worker's first use of torch)."""
    uri = f"sqlite:///{tmp / 'mlruns.db'}"
    raw = space(trials)
    parsed = parse_space(raw, "overhead.yaml", yaml.safe_dump(raw))
    started, called = time.perf_counter(), time.time()
    run_search(parsed, str(root), name, tracking_uri=uri, storage=tmp / "runs", cache_dir=tmp / "cache")
    search_s, returned = time.perf_counter() - started, time.time()
    mlflow = tracking.client(uri)
    parent = tracking.find_search_run(mlflow, uri, name)
    configs = []
    runs = tracking.trial_runs(mlflow, uri, parent.info.run_id)
    first, last = min(r.info.start_time for r in runs) / 1000, max(r.info.end_time for r in runs) / 1000
    span = last - first
    durations = [(r.info.end_time - r.info.start_time) / 1000 for r in sorted(runs, key=lambda r: r.info.start_time)]
    first_extra = durations[0] - statistics.median(durations[1:])
    for run in runs:
        path = mlflow.download_artifacts(run.info.run_id, "config.yaml", str(tmp))
        configs.append(parse_config({k: v for k, v in yaml.safe_load(Path(path).read_text()).items() if k != "data"}))
    started = time.perf_counter()
    for index, config in enumerate(configs):
        get_recipe(config.recipe)(config, store, workdir=tmp / f"{name}-{index}")
    return len(configs), search_s, time.perf_counter() - started, span / len(runs), (first - called,
                                                                                     returned - last, first_extra)


def fresh_driver(tmp: Path) -> None:
    """In a new process (``--fresh TMP``): start Ray, run a 4-trial search, print its costs as JSON."""
    root = tmp / "echonet"
    store = load_store(root, tmp / "cache", progress=False)
    started = time.perf_counter()
    init_ray(None, temp_dir=str(tmp / "ray-fresh"))
    ray_s = time.perf_counter() - started
    *_, (before, after, extra) = timed_search(4, "fresh", root, store, tmp)
    print(json.dumps({"ray": ray_s, "before": before, "after": after, "extra": extra}))


def fresh_line(tmp: Path) -> str:
    run = subprocess.run([sys.executable, __file__, "--fresh", str(tmp)], capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"the fresh driver exited {run.returncode}:\n{run.stderr[-3000:]}")
    cost = json.loads(run.stdout.strip().splitlines()[-1])
    return (f"a fresh driver (starts Ray, then the search): Ray start-up {cost['ray']:.1f} s, then "
            f"{cost['before']:.1f} s to the first trial's start, whose trial took {cost['extra']:.1f} s longer "
            f"than the median one; {cost['after']:.1f} s after the last trial's end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--fresh", type=Path, help=argparse.SUPPRESS)  # the fresh driver's own process
    args = parser.parse_args()
    if args.fresh:
        return fresh_driver(args.fresh)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = write_synthetic(tmp / "echonet", videos=8, seed=0)
        store = load_store(root, tmp / "cache", progress=False)
        tracking.open_store(f"sqlite:///{tmp / 'mlruns.db'}", create=True)  # as a user's second search finds it
        fresh = fresh_line(tmp)  # before this process starts a Ray of its own
        started = time.perf_counter()
        init_ray(None, temp_dir=str(tmp / "ray"))
        ray_s = time.perf_counter() - started
        timed_search(2, "warm-up", root, store, tmp)  # first MLflow database, first worker process
        runs = [timed_search(n, f"n{n}", root, store, tmp) for n in (args.trials, 2 * args.trials)]
        for count, search_s, plain_s, _, _ in runs:
            print(f"{count:3d} trials through lvsearch: {search_s:6.2f} s   same fits in one plain process: "
                  f"{plain_s:5.2f} s   ratio {search_s / plain_s:5.1f}x   all-in overhead "
                  f"{(search_s - plain_s) / count:.3f} s per trial")
        (n1, s1, p1, _, fixed1), (n2, s2, p2, steady, fixed2) = runs
        marginal = ((s2 - p2) - (s1 - p1)) / (n2 - n1)
        print(f"Ray start-up, once per process: {ray_s:.1f} s")
        for count, (before, after, extra) in ((n1, fixed1), (n2, fixed2)):
            print(f"fixed cost of the {count}-trial search: {before:.1f} s to the first trial's start (Tuner, "
                  f"MLflow parent, a trial worker) + {after:.1f} s after the last trial's end (summary, "
                  f"report) = {before + after:.1f} s; the first trial also took {extra:.1f} s longer than the "
                  f"median one")
        print(fresh)
        print(f"cross-check, (T(2N) - T(N)) / N minus plain: {marginal:.3f} s per trial (noisy: two wall clocks)")
        print(f"steady state in the {n2}-trial search: {steady:.3f} s per trial against {p2 / n2:.3f} s plain")
        after_first = steady - fixed2[2] / n2  # the first trial's warm-up is a fixed cost, shown above
        print(f"the same without the first trial's extra: {after_first - p2 / n2:.3f} s per trial")
        print(f"orchestration overhead per trial: {steady - p2 / n2:.3f} s")


if __name__ == "__main__":
    main()
