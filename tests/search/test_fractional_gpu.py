"""Fractional GPUs without a GPU: a local Ray head declares one logical GPU, a probe search asks
``gpu: 0.25`` per trial with concurrency 4, and four trials share the card (Ray gives each the GPU
id; each, finding no CUDA, runs on CPU and says so)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from search import tags, tracking

BIN = Path(sys.executable).parent
TRIALS = 4
# The four trials start as their cold workers come up, 2 s apart alone and more than a 30-epoch
# trial (~7 s) apart once in the loaded suite: 80 epochs (~18 s a trial) leave room for the overlap.
SPACE = {"recipe": "dinov2_probe",
         "fixed": {"backbone": "tiny", "image_size": 112, "epochs": 80, "loss_reduction": "mean", "device": "auto"},
         "params": {"lr": {"type": "loguniform", "low": 1e-3, "high": 3e-2}},
         "search": {"sampler": "random", "scheduler": "fifo", "samples": TRIALS, "concurrency": TRIALS, "seed": 0},
         "resources": {"cpu": 0.5, "gpu": 0.25}}


@pytest.fixture
def one_gpu_ray(tmp_path: Path, short_tmp, free_port):
    """A Ray head on loopback declaring one GPU this machine does not have."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "") not in ("", "-1"):
        pytest.skip("this test declares a GPU that is absent; run it where CUDA is hidden")
    env = {**os.environ, "HOME": str(tmp_path), "RAY_AUTH_MODE": "token", "PYTHONUNBUFFERED": "1"}
    subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env, capture_output=True, check=True,
                   timeout=60)
    port = free_port()
    ray_dir = short_tmp("lvs-ray-")
    head = subprocess.run([str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                           "--num-cpus=2", "--num-gpus=1", f"--temp-dir={ray_dir}",
                           "--include-dashboard=false", "--disable-usage-stats"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert head.returncode == 0, head.stdout[-2000:] + head.stderr[-2000:]
    yield {"address": f"127.0.0.1:{port}", "env": env}
    # `ray stop` would stop every Ray on the machine (the suite's own among them): only this one's
    subprocess.run(["pkill", "-f", str(ray_dir)], check=False)
    time.sleep(1)
    subprocess.run(["pkill", "-9", "-f", str(ray_dir)], check=False)


def test_four_trials_share_one_gpu_and_fall_back_to_cpu_with_a_notice(one_gpu_ray: dict, synthetic_root: Path,
                                                                        tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    run = subprocess.run([str(BIN / "lvsearch"), "run", str(space), "--address", one_gpu_ray["address"],
                          "--data", str(synthetic_root), "--name", "quarter", "--tracking-uri", uri,
                          "--storage", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")],
                         env=one_gpu_ray["env"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    mlflow = tracking.client(uri)
    parent = tracking.find_search_run(mlflow, uri, "quarter")
    trials = tracking.trial_runs(mlflow, uri, parent.info.run_id)
    assert len(trials) == TRIALS and all(t.data.tags[tags.STATUS_TAG] == "completed" for t in trials)
    assert all(t.data.tags.get(tags.GPUS_TAG) == "0" for t in trials)  # each given the one GPU by Ray
    assert all("CUDA is not available on this node: running on CPU" in t.data.tags[tags.DEVICE_NOTE_TAG]
               for t in trials)
    assert all(t.data.params["device"] == "auto" for t in trials)
    # each trial's inputs kept within its quarter of the card and its 0.5 of the node's 2 CPUs' memory
    assert all(t.data.tags[tags.DEVICE_PARTS_TAG] == "cuda 0.25, cpu 0.25" for t in trials)
    latest_start = max(t.info.start_time for t in trials)
    earliest_end = min(t.info.end_time for t in trials)
    assert latest_start < earliest_end, "the four trials did not all run at once on the one GPU"
