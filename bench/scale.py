"""How the pipeline's stages grow with the data set: each stage at two (or more) sizes, with its
growth exponent k (time ~ N^k between the smallest and largest size) and its cost projected to
EchoNet-Dynamic's 10,030 videos.

Stages: synthesis (`lvseg synth`), frame-store build (wall, peak RSS, bytes), DINOv2 feature-cache
build (tiny random backbone: wall, bytes), one probe trial (2 epochs: seconds per epoch, peak RSS),
one SAM prompt-strategy trial (tiny random SAM, box prompts, its embedding cache built first). Each
stage runs in a child process of its own, so its peak RSS is its own (a Python with torch imported
is ~0.3-0.5 GB of that).

The tracking store grows with the trials people run, not with the videos: `lvsearch list` and
`lvsearch export` (the commands, from a new process, as people run them) are timed against stores
of two sizes (`--runs`, trial runs in searches of 25, written with the same tracking calls as a
search's driver: params, best-score metrics and intervals, config.yaml, statuses).

Video lengths: drawn uniformly from 100-250 frames (`lvseg synth --frames 100:250`), the mean of
EchoNet-Dynamic's (~175 frames; the release's spread, 28 to ~1,000, is not copied), so that
synthesis and the frame-store build decode as many frames per video as the real data; `--frames
40:56` gives the generator's short default (the tests'). Tiny random networks: speeds, never
accuracies.

    .venv/bin/python bench/scale.py [--videos 100,400] [--frames 100:250] [--runs 50,200]   # ~4-8 min, 2 cores
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lvseg.cli import frame_range
from lvseg.synth import ECHONET_FRAMES

REAL_VIDEOS = 10_030
STAGES = ("synthesis", "frame store", "feature cache", "probe epoch", "SAM trial")
COMMANDS = {"lvsearch list": ["list"], "lvsearch export": ["export", "search-000", "--out", "best.yaml"]}
TRIALS_PER_SEARCH = 25
PROJECTED_RUNS = 5_000  # a team's store after months of searches


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def stage(name: str, videos: int, frames: tuple[int, int], work: Path) -> dict:
    """Run one stage here (in a child process); its seconds, peak RSS and bytes written."""
    import torch

    from lvseg.config import parse_config
    from lvseg.features import feature_cache
    from lvseg.framestore import load_store
    from lvseg.recipes import get_recipe
    from lvseg.synth import write_synthetic

    torch.set_num_threads(2)
    root, cache = work / "echonet", work / "cache"
    started, written = time.perf_counter(), 0
    if name == "synthesis":
        write_synthetic(root, videos=videos, seed=0, frames=frames)
        written = _bytes(root)
    elif name == "frame store":
        written = _bytes(load_store(root, cache, progress=False).path)
    elif name == "feature cache":
        built = feature_cache(load_store(root, cache, progress=False), "tiny", 112, 1)
        built.load(progress=False)
        written = _bytes(built.path)
    elif name == "probe epoch":
        config = parse_config({"recipe": "dinov2_probe", "backbone": "tiny", "image_size": 112, "epochs": 2,
                               "loss_reduction": "mean"})
        result = get_recipe("dinov2_probe")(config, load_store(root, cache, progress=False), workdir=work / "probe")
        return {"seconds": sum(e["seconds"] for e in result.history) / len(result.history), "rss": _rss(), "bytes": 0}
    elif name == "SAM trial":
        config = parse_config({"recipe": "sam_prompts", "model": "tiny", "strategy": "box"})
        get_recipe("sam_prompts")(config, load_store(root, cache, progress=False), workdir=work / "sam")
    return {"seconds": time.perf_counter() - started, "rss": _rss(), "bytes": written}


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(videos: int, frames: str, work: Path) -> dict[str, dict]:
    figures = {}
    for name in STAGES:
        done = subprocess.run([sys.executable, __file__, "--stage", name, "--videos", str(videos), "--frames", frames,
                               "--work", str(work)], capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise SystemExit(f"stage {name} at {videos} videos failed:\n{done.stderr[-3000:]}")
        figures[name] = json.loads(done.stdout.strip().splitlines()[-1])
        shown = figures[name]
        print(f"{videos:>6} videos  {name:<14} {shown['seconds']:>8.2f} s  peak RSS {shown['rss'] / 1e9:5.2f} GB"
              + (f"  {shown['bytes'] / 1e6:8.1f} MB" if shown["bytes"] else ""), flush=True)
    return figures


def populate(uri: str, runs: int) -> None:
    """A tracking store of ``runs`` completed trial runs, in searches of TRIALS_PER_SEARCH."""
    import yaml

    from lvseg.config import parse_config
    from lvseg.status import COMPLETED
    from search import tracking

    mlflow, rng = tracking.open_store(uri, create=True), random.Random(0)
    config = yaml.safe_dump(parse_config({"recipe": "dinov2_probe"}).to_dict())
    for first in range(0, runs, TRIALS_PER_SEARCH):
        name, trials = f"search-{first // TRIALS_PER_SEARCH:03d}", min(TRIALS_PER_SEARCH, runs - first)
        parent = tracking.start_search_run(mlflow, uri, name, {
            "recipe": "dinov2_probe", "metric": "val_dice", "mode": "max", tracking.SAMPLES_TAG: str(trials),
            tracking.DRIVER_TAG: "bench:0"}, "recipe: dinov2_probe\n", "space.yaml")
        for trial in range(trials):
            dice = rng.uniform(0.1, 0.9)
            run = tracking.start_trial_run(mlflow, uri, parent, name, f"t{trial}", f"trial_{trial:04d}",
                                           {"lr": 10 ** rng.uniform(-4, -1), "batch_size": rng.choice([8, 16])})
            tracking.log_metrics(mlflow, run, {"best_val_dice": dice, "best_val_dice_ci_low": dice - 0.02,
                                               "best_val_dice_ci_high": dice + 0.02}, step=0)
            mlflow.log_text(run, config, "config.yaml")
            tracking.finish_run(mlflow, run, COMPLETED)
        tracking.finish_run(mlflow, parent, COMPLETED)


def measure_store(runs: int, work: Path) -> dict[str, dict]:
    """Seconds of each command against a store of ``runs`` trial runs (the store is built first, untimed)."""
    uri = f"sqlite:///{work / 'mlruns.db'}"
    done = subprocess.run([sys.executable, __file__, "--populate", str(runs), "--work", uri], capture_output=True,
                          text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"writing a store of {runs} runs failed:\n{done.stderr[-3000:]}")
    figures = {}
    for name, args in COMMANDS.items():
        started = time.perf_counter()
        done = subprocess.run([str(Path(sys.executable).parent / "lvsearch"), *args, "--tracking-uri", uri],
                              capture_output=True, text=True, timeout=600, cwd=work)
        if done.returncode != 0:
            raise SystemExit(f"{name} on {runs} runs failed:\n{done.stderr[-3000:]}")
        figures[name] = {"seconds": time.perf_counter() - started,
                         "rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}
        print(f"{runs:>6} runs    {name:<16} {figures[name]['seconds']:>6.2f} s", flush=True)
    return figures


def exponent(small: float, large: float, ratio: float) -> float:
    return math.log(max(large, 1e-9) / max(small, 1e-9)) / math.log(ratio)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", default="100,400", help="comma-separated sizes, smallest first")
    parser.add_argument("--frames", default=f"{ECHONET_FRAMES[0]}:{ECHONET_FRAMES[1]}", type=frame_range,
                        metavar="MIN:MAX", help="frames per synthetic video, drawn uniformly")
    parser.add_argument("--runs", default="50,200", help="trial runs in the tracking store, smallest first")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--populate", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(stage(args.stage, int(args.videos), args.frames, Path(args.work))))
        return
    if args.populate:
        populate(args.work, args.populate)
        return
    frames = f"{args.frames[0]}:{args.frames[1]}"
    print(f"bench/scale.py: synthetic videos ({frames} frames), tiny random networks: growth, not accuracy",
          flush=True)
    sizes, runs = [int(n) for n in args.videos.split(",")], [int(n) for n in args.runs.split(",")]
    results = {}
    for videos in sizes:
        with tempfile.TemporaryDirectory(prefix=f"lvseg-scale-{videos}-") as work:
            results[videos] = measure(videos, frames, Path(work))
    stores = {}
    for count in runs:
        with tempfile.TemporaryDirectory(prefix=f"lvseg-store-{count}-") as work:
            stores[count] = measure_store(count, Path(work))
    worst = max(growth(results, sizes, STAGES, REAL_VIDEOS, "videos", rss=True),
                growth(stores, runs, COMMANDS, PROJECTED_RUNS, "runs", rss=False), key=lambda pair: pair[1])
    print(f"scale: worst growth exponent {worst[1]:.2f} ({worst[0]})")


def growth(results: dict[int, dict], sizes: list[int], names, real: int, unit: str, rss: bool) -> tuple[str, float]:
    """Print each stage's growth exponent between the smallest and largest size and its cost
    projected to ``real``; returns the worst (stage, exponent)."""
    small, large = sizes[0], sizes[-1]
    ratio, worst = large / small, ("", -math.inf)
    print(f"\n{'stage':<16} {'k (time)':>9} {'k (RSS)' if rss else '':>8}  projected at {real:,} {unit}")
    for name in names:
        a, b = results[small][name], results[large][name]
        k = exponent(a["seconds"], b["seconds"], ratio)
        k_rss = f"{exponent(a['rss'], b['rss'], ratio):>8.2f}" if rss else " " * 8
        print(f"{name:<16} {k:>9.2f} {k_rss}  {b['seconds'] * (real / large) ** k:,.0f} s")
        worst = max(worst, (name, k), key=lambda pair: pair[1])
    return worst


if __name__ == "__main__":
    main()
