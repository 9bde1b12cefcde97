"""Warm trial workers: a local Ray's idle workers import the trial's modules when they start, and
Tune's trials run in them instead of in a new process each."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from search import warm

# A fresh driver (the session's Ray has long handed its idle workers out): starts Ray as
# `lvsearch run` does, then runs one Tune trial that says which process it ran in and what that
# process had imported before the trial's own code ran.
DRIVER = """
import json, os, sys
from ray import tune
from search.prepare import init_ray
from search.warm import PRELOADED

def trial(config):
    tune.report({"pid": os.getpid(), "preloaded": [name in sys.modules for name in PRELOADED]})

init_ray(None, temp_dir=sys.argv[1], verbose=False)
alive = [int(pid) for pid in os.listdir("/proc") if pid.isdigit()]  # Ray's idle workers among them
result = tune.Tuner(trial, run_config=tune.RunConfig(storage_path=sys.argv[2], verbose=0)).fit()[0]
print(json.dumps({"alive": alive, **{k: result.metrics[k] for k in ("pid", "preloaded")}}))
"""


def test_a_search_s_first_trial_runs_in_a_worker_that_was_warm_before_the_search(short_tmp, tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-c", DRIVER, str(short_tmp("lvs-ray-")), str(tmp_path / "runs")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["pid"] in seen["alive"], "the trial's worker was started for the trial: a cold start"
    assert seen["preloaded"] == [True] * len(warm.PRELOADED)


def test_workers_preload_only_where_one_warm_worker_per_cpu_fits_in_a_quarter_of_memory() -> None:
    gb = 2**30
    assert warm.system_config(2, 24 * gb) == {"preload_python_modules": list(warm.PRELOADED),
                                              "idle_worker_killing_time_threshold_ms": warm.WARM_IDLE_MS}
    assert warm.system_config(64, 64 * gb) == {}  # 64 warm workers would hold ~31 GB
    assert warm.system_config(64, 256 * gb) != {}


# Ray sets a trial's CUDA_VISIBLE_DEVICES when the trial starts; a worker that asked CUDA for its
# devices while preloading would keep seeing every GPU of the node (fractional GPUs would collide).
# Every module a worker preloads sits on the path to a search's first trial: the sampler's
# (Optuna's) and torch.compile's (torch._dynamo, ~2.4 s) are not a trial's to import.
PRELOAD = """
import importlib, json, sys, torch
asked = []
count, nvml = torch._C._cuda_getDeviceCount, torch.cuda._device_count_nvml
torch._C._cuda_getDeviceCount = lambda: asked.append("count") or count()
torch.cuda._device_count_nvml = lambda: asked.append("nvml") or nvml()
from search import warm
for name in warm.PRELOADED:
    importlib.import_module(name)
imported = list(asked)
heavy = [top for top in ("optuna", "torch._dynamo") if any(n == top or n.startswith(top + ".") for n in sys.modules)]
torch.cuda.is_available()  # the probe sees a real query
print(json.dumps({"asked_while_preloading": imported, "asked_after": asked,
                  "initialised": torch.cuda.is_initialized(), "not_a_trial_s": heavy}))
"""


@pytest.fixture(scope="module")
def preloaded() -> dict:
    run = subprocess.run([sys.executable, "-c", PRELOAD], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.splitlines()[-1])


def test_preloading_asks_cuda_nothing(preloaded: dict) -> None:
    assert preloaded["asked_while_preloading"] == []
    assert preloaded["asked_after"] == ["count"] and not preloaded["initialised"]


def test_preloading_imports_neither_the_sampler_nor_torch_compile(preloaded: dict) -> None:
    assert preloaded["not_a_trial_s"] == []
