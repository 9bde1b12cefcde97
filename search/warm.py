"""Trial workers that are warm before the first trial: a local search's fixed cost.

A trial's worker imports torch, Ray Tune and the recipes: ~5 s of one core (lvseg.optim keeps
torch.optim's ~2.4 s import of torch._dynamo out of it). A local Ray starts one idle worker per CPU
when the driver connects, but Tune's first trial could not use them, and its new worker began
those imports only once the search had started:
- Tune gives every trainable actor ``runtime_env={"env_vars": {"PL_DISABLE_FORK": "1"}}`` (for
  PyTorch Lightning, ray#28197), and Ray runs an actor with its own runtime env only in a worker
  started with that env: always a new process. The variable is set in the local Ray's own
  environment instead (its workers inherit it), so the actors' runtime env is empty and Ray hands
  them one of its idle workers;
- those idle workers import :data:`PRELOADED` as soon as they start, while the driver still
  prepares the search, where the machine's memory holds one warm worker per CPU.
Nothing here initialises CUDA: Ray sets a trial's CUDA_VISIBLE_DEVICES when the trial starts.
"""

from __future__ import annotations

import os
from typing import Any

# What a trial worker imports before its first epoch: the trainable (torch, Ray Tune, the
# recipes). Not torch._dynamo: the probe's trials never import it (lvseg.optim), and a worker
# preloading it for the SAM recipes (torchvision.models imports it) would hold every search's
# first trial back by ~2.4 s of one core, measured on 2 cores (BENCHMARKS.md).
PRELOADED = ("search.trainable",)
# An idle worker that imported them holds ~0.45 GB of its own (measured: USS); Ray keeps one per
# CPU, and they may take at most this share of the machine's memory.
WARM_WORKER_BYTES = 500 * 2**20
WARM_SHARE = 0.25
# How long Ray lets an idle worker it holds beyond its soft limit live (its default: 1 s). A local
# Ray starts while the driver still imports (search.localray), so its warm workers wait seconds
# for the first trial: with the default, 2 of 4 runs started their first trial 10-11 s after Ray
# was up instead of ~4 s, the delay of a cold worker, as when Ray's idle-kill stopped a warm one
# mid-import (seen in its logs before); with 30 s, none of 9 runs (BENCHMARKS.md).
WARM_IDLE_MS = 30_000


def system_config(cpus: int, memory_bytes: int) -> dict[str, Any]:
    """Ray's ``_system_config`` for a local Ray of ``cpus`` CPUs: its workers import
    :data:`PRELOADED` when they start, and wait for trials, where one warm worker per CPU fits in
    memory."""
    if cpus * WARM_WORKER_BYTES > WARM_SHARE * memory_bytes:
        return {}
    return {"preload_python_modules": list(PRELOADED), "idle_worker_killing_time_threshold_ms": WARM_IDLE_MS}


def memory_bytes() -> int:
    """This machine's physical memory."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def trials_use_idle_workers() -> None:
    """Move Tune's default trainable env vars into this process's environment (which a local
    Ray's workers inherit): before ``ray.init``. Tune reads its defaults when it registers a
    trainable, so the change holds for every search this driver runs."""
    from ray.tune.execution import class_cache

    os.environ.update(class_cache.DEFAULT_ENV_VARS)
    class_cache.DEFAULT_ENV_VARS.clear()
