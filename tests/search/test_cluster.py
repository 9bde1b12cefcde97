"""A real two-node Ray cluster on this machine: two network namespaces joined by a veth pair
(10.77.0.1 head + driver + MLflow server, 10.77.0.2 worker). A search runs from the head, its
trials land on both nodes and log to the MLflow server over HTTP. Needs root (ip netns)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from search import tracking

HEAD, WORKER = "10.77.0.1", "10.77.0.2"
NS_HEAD, NS_WORKER = "lvs-test-head", "lvs-test-worker"
BIN = Path(sys.executable).parent


def _sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=120)


def _can_make_namespaces() -> str | None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return "needs root and iproute2 to create network namespaces"
    probe = _sh("ip", "netns", "add", "lvs-test-probe", check=False)
    if probe.returncode != 0:
        return f"cannot create network namespaces here: {probe.stderr.strip()}"
    _sh("ip", "netns", "del", "lvs-test-probe", check=False)
    return None


def _in(namespace: str, env: dict[str, str], *command: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", namespace, *command], env=env, **kwargs)


@pytest.fixture(scope="module")
def network():
    reason = _can_make_namespaces()
    if reason:
        pytest.skip(reason)
    for ns in (NS_HEAD, NS_WORKER):
        _sh("ip", "netns", "del", ns, check=False)
        _sh("ip", "netns", "add", ns)
        _sh("ip", "-n", ns, "link", "set", "lo", "up")
    _sh("ip", "link", "add", "lvs-th0", "type", "veth", "peer", "name", "lvs-tw0")
    for ns, dev, addr in ((NS_HEAD, "lvs-th0", HEAD), (NS_WORKER, "lvs-tw0", WORKER)):
        _sh("ip", "link", "set", dev, "netns", ns)
        _sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
        _sh("ip", "-n", ns, "link", "set", dev, "up")
    yield
    for ns in (NS_HEAD, NS_WORKER):
        _sh("ip", "netns", "del", ns, check=False)  # removes the veth pair with it


@pytest.fixture(scope="module")
def cluster(network, tmp_path_factory: pytest.TempPathFactory, short_tmp):
    work = tmp_path_factory.mktemp("cluster")
    ray_dir = short_tmp("lvc-")
    env = {**os.environ, "HOME": str(work), "RAY_AUTH_MODE": "token", "PYTHONUNBUFFERED": "1"}
    # Ray 2.60 clusters need token auth; every process of this cluster reads the token from HOME
    subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env, capture_output=True, check=True,
                   timeout=60)
    server = _in(NS_HEAD, env, str(BIN / "mlflow"), "server", "--host", HEAD, "--port", "5000",
                 "--backend-store-uri", f"sqlite:///{work / 'server.db'}",
                 "--artifacts-destination", str(work / "artifacts"), "--workers", "1",
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ray = str(BIN / "ray")
    common = ["--num-cpus=1", "--disable-usage-stats"]
    head = _in(NS_HEAD, env, ray, "start", "--head", f"--node-ip-address={HEAD}", "--port=6379",
               f"--temp-dir={ray_dir / 'rh'}", "--include-dashboard=false", *common,
               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert head.wait(120) == 0, head.stdout.read().decode()
    worker = _in(NS_WORKER, env, ray, "start", f"--address={HEAD}:6379", f"--node-ip-address={WORKER}",
                 f"--temp-dir={ray_dir / 'rw'}", *common, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert worker.wait(120) == 0, worker.stdout.read().decode()
    _wait_for_server(env)
    _warm_both_nodes(env)
    yield {"work": work, "env": env}
    server.terminate()
    server.wait(30)
    # `ray stop` would kill every Ray on the machine; end only this cluster's processes
    for signal_flag in ("-TERM", "-KILL"):
        for folder in (work, ray_dir):
            subprocess.run(["pkill", signal_flag, "-f", str(folder)], check=False)
        time.sleep(1)
    shutil.rmtree(ray_dir, ignore_errors=True)


WARM = f"""
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init(address="{HEAD}:6379")
nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
assert len(nodes) == 2, ray.nodes()

@ray.remote(num_cpus=1)
def load():
    import lvseg.recipes  # torch, transformers...: a cold first import is slow on a loaded machine
    return ray.util.get_node_ip_address()

where = [load.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote() for n in nodes]
print(sorted(ray.get(where)))
"""


def _warm_both_nodes(env: dict[str, str]) -> None:
    """Both nodes alive and their Python imports warm before the search, so that a slow first
    actor start on the worker does not let the head take every trial."""
    warm = _in(NS_HEAD, env, sys.executable, "-c", WARM, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = warm.communicate(timeout=300)[0].decode()
    assert warm.returncode == 0 and f"['{HEAD}', '{WORKER}']" in output, output[-2000:]


def _wait_for_server(env: dict[str, str]) -> None:
    probe = (f"import urllib.request, time\nfor _ in range(60):\n    try:\n"
             f"        urllib.request.urlopen('http://{HEAD}:5000/health', timeout=2); break\n"
             f"    except OSError: time.sleep(1)\nelse: raise SystemExit('mlflow server did not start')")
    assert _in(NS_HEAD, env, sys.executable, "-c", probe).wait(90) == 0


# Tune reuses a free actor for a pending trial, so a head that ran all six trials before the
# worker's cold actor came up would take them all. Alone, both actors start ~8 s after the search;
# with 4 epochs (~1.3 s a trial) the head once took all six in the loaded suite, and with 20 once
# more after the losses got faster (2026-12-01). 40 epochs keep the head busy ~40 s on its own.
SPACE = {"recipe": "dinov2_probe",
         "fixed": {"backbone": "tiny", "image_size": 112, "epochs": 40, "loss_reduction": "mean"},
         "params": {"lr": {"type": "loguniform", "low": 1e-3, "high": 3e-2},
                    "head": {"type": "choice", "values": ["linear", "conv"]}},
         "search": {"sampler": "random", "scheduler": "fifo", "samples": 6, "concurrency": 2, "seed": 0},
         "resources": {"cpu": 1, "gpu": 0}}


def test_search_spans_both_nodes_and_logs_over_http(cluster, synthetic_root: Path) -> None:
    work, env = cluster["work"], cluster["env"]
    space = work / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    run = _in(NS_HEAD, env, str(BIN / "lvsearch"), "run", str(space), "--address", f"{HEAD}:6379",
              "--tracking-uri", f"http://{HEAD}:5000", "--data", str(synthetic_root), "--name", "two-nodes",
              "--storage", str(work / "runs"), "--cache-dir", str(work / "cache"),
              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=work)  # its default optuna.db lands there
    output = run.communicate(timeout=600)[0].decode()
    assert run.returncode == 0, output[-3000:]
    # read the server's own database: what the driver and the workers sent it over HTTP
    store = f"sqlite:///{work / 'server.db'}"
    mlflow = tracking.client(store)
    parent = tracking.find_search_run(mlflow, store, "two-nodes")
    trials = tracking.trial_runs(mlflow, store, parent.info.run_id)
    assert len(trials) == 6
    assert {t.data.tags[tracking.NODE_TAG] for t in trials} == {HEAD, WORKER}
    assert all(t.data.tags[tracking.STATUS_TAG] == "completed" for t in trials)
    assert all(t.info.artifact_uri.startswith("mlflow-artifacts:") for t in trials)  # proxied, no paths
    assert any((work / "artifacts").rglob("overlay.png")) and any((work / "artifacts").rglob("config.yaml"))
