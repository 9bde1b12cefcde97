"""What one GPU does with our workloads, in one command (<= 10 minutes on one H200):

1. DINOv2-base feature extraction at 224 px, bf16 (random weights: the same FLOPs as the real ones);
2. SAM vit_b's image encoder (random weights);
3. DeepLabV3-ResNet50 training at 112 px (bf16 autocast, channels-last);
4. the Trainer's own linear-probe epochs (lvseg.train, as a trial runs them) over 20,000 frames of
   base-sized features resident on the device, and their time over the device's memory-traffic
   floor (the features' bytes / the device's copy rate; the goal is within 3x), in batches of 64
   frames (as the recipe's batch sizes) and of 512;
5. a 16-trial probe search with ``gpu: 0.25`` (four trials per card), wall time.

Each prints images (or frames) per second and, where the FLOPs are counted (torch's
FlopCounterMode on one batch), the model-FLOP utilisation against the card's bf16 peak.

A stage that fails says so in one line (traceback on stderr) and the others still run; the last
line names the failed stages and the exit code is 1. The search needs lvseg-search's whole
environment (Ray, MLflow, Optuna); where those are not installed (the lent GPU machine has
PyTorch, not them, and Ray's wheel alone is too big to carry there), stages 1-4 run and the
search is skipped, saying so.

``--smoke`` runs the same stages scaled down (tiny models, a few batches, a 2-trial search) on CPU:
the test suite runs it, so the script is known to work before a GPU is ever lent. Its figures are
not benchmarks. Random weights and synthetic data throughout: speeds, never accuracies.

    .venv/bin/python bench/gpu.py            # on a GPU machine
    .venv/bin/python bench/gpu.py --smoke    # anywhere
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from benchlib import probe_epochs
from torch.utils.flop_counter import FlopCounterMode

from lvseg.losses import build_loss
from lvseg.models import dinov2
from lvseg.models.baseline import build_model
from lvseg.models.sam import build_sam
from lvseg.recipes.probe import ProbeConfig, feature_inputs
from lvseg.synth import write_synthetic
from lvseg.train import autocast

SEARCH_NEEDS = ("ray", "mlflow", "optuna")
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12}  # dense bf16 FLOP/s, by card name
NAME = 62  # the width of a stage's name in its line
PROBE_BATCHES = (64, 512)  # frames a step: a recipe's batch size, and one that launches 8x fewer kernels


@dataclass(frozen=True)
class Scale:
    dinov2: str
    dinov2_size: int
    sam: str
    baseline: str
    batch: int
    batches: int
    frames: int
    channels: int
    trials: int
    videos: int


FULL = Scale("random-base", 224, "random_vit_b", "deeplabv3_resnet50", 64, 20, 20_000, 768, 16, 400)
SMOKE = Scale("tiny", 112, "tiny", "tiny", 4, 2, 200, 32, 2, 8)


def peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for card, flops in PEAK_BF16.items() if card in name), None)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flops_of(step: Callable[[], object]) -> float:
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def timed(step: Callable[[], object], batches: int, device: torch.device) -> float:
    """Seconds per call of ``step`` after one warm-up call."""
    step()
    sync(device)
    started = time.perf_counter()
    for _ in range(batches):
        step()
    sync(device)
    return (time.perf_counter() - started) / batches


def line(name: str, per_second: float, unit: str, flops_per_item: float | None, device: torch.device) -> float | None:
    top = peak(device)
    mfu = per_second * flops_per_item / top if top and flops_per_item else None
    shown = f"{mfu:.1%} of bf16 peak" if mfu is not None else "MFU n/a (no known peak for this device)"
    print(f"{name:<{NAME}} {per_second:>10.1f} {unit}/s   {shown}", flush=True)
    return mfu


def dinov2_extraction(scale: Scale, device: torch.device) -> float | None:
    model = dinov2.load_backbone(scale.dinov2).to(device).eval()
    images = torch.randint(0, 255, (scale.batch, 112, 112, 3), dtype=torch.uint8, device=device)

    @torch.no_grad()
    def step() -> torch.Tensor:
        with autocast(device):
            return dinov2.patch_features(model, images, scale.dinov2_size, 1)

    seconds = timed(step, scale.batches, device)
    return line(f"DINOv2 {scale.dinov2} features at {scale.dinov2_size} px", scale.batch / seconds, "img",
                flops_of(step) / scale.batch, device)


def sam_encoder(scale: Scale, device: torch.device) -> float | None:
    encoder = build_sam(scale.sam, None).image_encoder.to(device).eval()
    size = encoder.img_size
    images = torch.randn(max(1, scale.batch // 4), 3, size, size, device=device)

    @torch.no_grad()
    def step() -> torch.Tensor:
        with autocast(device):
            return encoder(images)

    seconds = timed(step, scale.batches, device)
    return line(f"SAM {scale.sam} image encoder at {size} px", len(images) / seconds, "img",
                flops_of(step) / len(images), device)


def baseline_training(scale: Scale, device: torch.device) -> float | None:
    model = build_model(scale.baseline, out_channels=1, backbone_weights=None).to(device)
    model = model.to(memory_format=torch.channels_last) if device.type == "cuda" else model
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-5, momentum=0.9)
    loss_of = build_loss("bce", reduction="sum", gamma=2.0)
    images = torch.randn(scale.batch, 3, 112, 112, device=device).contiguous(
        memory_format=torch.channels_last if device.type == "cuda" else torch.contiguous_format)
    target = (torch.rand(scale.batch, 112, 112, device=device) > 0.5).float()

    def step() -> None:
        with autocast(device):
            logits = model(images)
        loss = loss_of(logits.float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    seconds = timed(step, scale.batches, device)
    return line(f"{scale.baseline} training at 112 px", scale.batch / seconds, "img",
                flops_of(step) / scale.batch, device)


def copy_gb_s(device: torch.device, nbytes: int) -> float:
    """The rate of one large copy on ``device``, in GB/s, each byte counted once (as
    bench/resident.py counts the CPU's): what a gather of resident rows can read at best."""
    source = torch.ones(nbytes, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    return nbytes / timed(lambda: target.copy_(source), 3, device) / 1e9


def probe_epoch(scale: Scale, device: torch.device) -> float:
    """The Trainer's epochs of a linear head over ``scale.frames`` resident fp16 feature maps (16x16
    grid), made into batches by the probe recipe's own ``feature_inputs``, in batches of each of
    ``PROBE_BATCHES``; returns the first's time over the memory-traffic floor: the features' bytes
    (each read once) / the device's copy rate. The larger batch shows how much of the first's
    time is per step (kernel launches), not per byte."""
    features = np.zeros((scale.frames // 2, 2, scale.channels, 16, 16), np.float16)  # (videos, phases, ...)
    inputs = feature_inputs(features, np.arange(scale.frames), ProbeConfig(device=device.type))
    rate = copy_gb_s(device, min(1 << 30, 8 * features.nbytes))
    floor = features.nbytes / (rate * 1e9)
    ratios = [_probe_epoch_seconds(scale, device, inputs, batch) / floor for batch in PROBE_BATCHES]
    for batch, ratio in zip(PROBE_BATCHES, ratios, strict=True):
        print(f"{f'probe-head epoch over {scale.frames:,} resident frames, batches of {batch}':<{NAME}} "
              f"{ratio * floor * 1e3:>10.1f} ms   {ratio:.1f}x the memory-traffic floor "
              f"({features.nbytes / 1e9:.3g} GB / {rate:.0f} GB/s copy)", flush=True)
    return ratios[0]


def _probe_epoch_seconds(scale: Scale, device: torch.device, inputs: Callable[[np.ndarray], torch.Tensor],
                         batch: int) -> float:
    """The mean of the Trainer's own epochs (benchlib) after the first."""
    seconds = probe_epochs(inputs, scale.frames, scale.channels, batch, device, 3 if scale is SMOKE else 6)
    return sum(seconds[1:]) / len(seconds[1:])


def probe_search(scale: Scale, device: torch.device, work: Path) -> float:
    root = write_synthetic(work / "echonet", videos=scale.videos, seed=0)
    gpu = 0.25 if device.type == "cuda" else 0
    space = {"recipe": "dinov2_probe", "fixed": {"backbone": scale.dinov2, "image_size": scale.dinov2_size,
                                                 "epochs": 1 if scale is SMOKE else 20, "loss_reduction": "mean"},
             "params": {"lr": {"type": "loguniform", "low": 1e-4, "high": 3e-2},
                        "head": {"type": "choice", "values": ["linear", "conv"]}},
             "search": {"sampler": "tpe", "scheduler": "fifo", "samples": scale.trials,
                        "concurrency": 4 if gpu else 1},
             "resources": {"cpu": 1, "gpu": gpu}}
    (work / "space.yaml").write_text(yaml.safe_dump(space))
    started = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "lvsearch"), "run", str(work / "space.yaml"),
                           "--data", str(root), "--name", "gpu-bench", "--tracking-uri",
                           f"sqlite:///{work / 'mlruns.db'}", "--storage", str(work / "runs"),
                           "--cache-dir", str(work / "cache")], capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"lvsearch run exited {done.returncode}\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    print(f"{f'{scale.trials}-trial probe search, gpu {gpu:g} per trial':<{NAME}} {seconds:>10.1f} s wall", flush=True)
    return seconds


def stage(name: str, run: Callable[[], object], failed: list[str]) -> object:
    """One stage's figure, or None with its error in one line (traceback on stderr): a fault in one
    stage (a package missing on the lent machine, another torch there) must not cost the others
    their figures on a GPU loan that may come once."""
    try:
        return run()
    except Exception as error:
        failed.append(name)
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(f"{name}: FAILED, {type(error).__name__}: {first}", flush=True)
        traceback.print_exc()
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models on CPU: checks the script, measures nothing")
    args = parser.parse_args()
    scale, device = (SMOKE, torch.device("cpu")) if args.smoke else (FULL, torch.device("cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or --smoke to check the script on CPU")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (smoke: not a benchmark)"
    print(f"bench/gpu.py on {where}; random weights and synthetic data: speeds, not accuracies", flush=True)
    failed: list[str] = []
    utilisation = [stage(name, lambda run=run: run(scale, device), failed) for name, run in
                   (("dinov2", dinov2_extraction), ("sam", sam_encoder), ("baseline", baseline_training))]
    over_floor = stage("probe epoch", lambda: probe_epoch(scale, device), failed)
    absent = [name for name in SEARCH_NEEDS if importlib.util.find_spec(name) is None]
    if absent:
        print(f"{scale.trials}-trial probe search: SKIPPED, {', '.join(absent)} not installed here", flush=True)
        searched = "probe search skipped"
    else:
        with tempfile.TemporaryDirectory(prefix="lvseg-gpu-bench-") as work:
            seconds = stage("probe search", lambda: probe_search(scale, device, Path(work)), failed)
        searched = f"{scale.trials}-trial probe search " + (f"{seconds:.0f} s" if seconds is not None else "failed")
    known = [u for u in utilisation if isinstance(u, float)]
    best = f"best MFU {max(known):.1%}" if known else "MFU n/a"
    best += f", probe epoch {over_floor:.1f}x its floor" if isinstance(over_floor, float) else ""
    print(f"gpu: {searched}, {best} ({where})" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
