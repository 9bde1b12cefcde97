"""A search's fixed cost before its first trial (issue 9, point 6): fresh `lvsearch run` commands.

Each run is a new `lvsearch run` process of a 2-trial tiny `dinov2_probe` search (concurrency 2,
one CPU each, one epoch) on an 8-video synthetic folder whose frame store, feature cache and
MLflow database already exist (as a user's second search finds them). From MLflow's run times
(the trials' own): the first trial's start measured from the command's launch, and from the
parent run's start, which the driver writes once its local Ray is up. The latter is the point-6
figure: the search's fixed cost beyond Ray's own start. With ``--against CHECKOUT``, runs
alternate between this tree and that checkout (its code first on the path), side by side.

    python bench/first_trial.py [--runs 3] [--against /path/to/other/checkout]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from lvseg.synth import write_synthetic
from search import tracking

HERE = Path(__file__).resolve().parent.parent
SPACE = {"recipe": "dinov2_probe", "data": None,
         "fixed": {"backbone": "tiny", "image_size": 112, "epochs": 1, "head": "linear", "loss_reduction": "mean"},
         "params": {"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1}},
         "search": {"sampler": "random", "scheduler": "fifo", "samples": 2, "concurrency": 2, "seed": 0},
         "resources": {"cpu": 1, "gpu": 0}}
ENTRY = "from search.cli import entry; entry()"


def lvsearch_run(tree: Path, tmp: Path, name: str) -> tuple[float, float]:
    """One fresh `lvsearch run` from ``tree``; (launch to first trial, Ray up to first trial) in s."""
    uri = f"sqlite:///{tmp / 'mlruns.db'}"
    command = [sys.executable, "-c", ENTRY, "run", str(tmp / "space.yaml"), "--name", name, "--tracking-uri", uri,
               "--storage", str(tmp / "runs"), "--cache-dir", str(tmp / "cache")]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    launched = time.time()
    run = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"lvsearch run ({tree}) exited {run.returncode}:\n{run.stdout[-2000:]}{run.stderr[-3000:]}")
    mlflow = tracking.client(uri)
    parent = tracking.find_search_run(mlflow, uri, name)
    first = min(r.info.start_time for r in tracking.trial_runs(mlflow, uri, parent.info.run_id)) / 1000
    return first - launched, first - parent.info.start_time / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh runs per tree")
    parser.add_argument("--against", type=Path, help="another checkout, run alternately with this one")
    args = parser.parse_args()
    trees = {"this tree": HERE} | ({f"{args.against}": args.against.resolve()} if args.against else {})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        space = SPACE | {"data": str(write_synthetic(tmp / "echonet", videos=8, seed=0))}
        (tmp / "space.yaml").write_text(yaml.safe_dump(space))
        lvsearch_run(HERE, tmp, "warm-up")  # stores, caches and the MLflow database now exist
        seen: dict[str, list[tuple[float, float]]] = {label: [] for label in trees}
        for index in range(args.runs):
            for position, (label, tree) in enumerate(trees.items()):
                seen[label].append(lvsearch_run(tree, tmp, f"run-{index}-{position}"))
                launch, after_ray = seen[label][-1]
                print(f"{label}: first trial {launch:.1f} s after launch, {after_ray:.1f} s after Ray was up",
                      flush=True)
    medians = {label: statistics.median(after for _, after in runs) for label, runs in seen.items()}
    against = "".join(f", against {value:.1f} s at {label}" for label, value in medians.items() if label != "this tree")
    print(f"first trial after Ray is up: {medians['this tree']:.1f} s (median of {args.runs} fresh lvsearch runs"
          f"{against}; goal 5 s)")


if __name__ == "__main__":
    main()
