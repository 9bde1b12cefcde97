"""The failure battery: bad input and real faults against `lvsearch`, end to end on local Ray with a
real `mlflow server` on 127.0.0.1 that the tests start, stop and restart.

For every case: the exit code; one line that says what happened (no traceback on the console);
no MLflow run left RUNNING; no search folder left by a search that never started; exactly one
child run per trial, with every epoch logged once. Faults are injected for real: processes are
killed, the server is stopped, files are truncated.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml

from lvseg.framestore import load_store
from lvseg.status import Status
from search import tracking
from search.cli import main

pytestmark = pytest.mark.slow
# the battery is the suite's longest module: `make test` runs it as two groups, one per worker
FIRST_HALF, SECOND_HALF = pytest.mark.xdist_group("failures-1"), pytest.mark.xdist_group("failures-2")
BIN = Path(sys.executable).parent
EPOCHS = 4


class Server:
    """A real `mlflow server` on 127.0.0.1 that can be killed and started again on the same port
    and database (its job runner is off: it only slows starts)."""

    def __init__(self, work: Path, port: int) -> None:
        self.port, self.work, self.process = port, work, None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def store(self) -> str:
        """The server's own database, read directly: what it was sent."""
        return f"sqlite:///{self.work / 'server.db'}"

    def start(self) -> None:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.process = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port), "--backend-store-uri",
             self.store, "--artifacts-destination", str(self.work / "artifacts"), "--workers", "1"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.uri}/health", timeout=2)
                return
            except OSError:
                time.sleep(0.3)
        pytest.fail("mlflow server did not start")

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, free_port):
    running = Server(tmp_path_factory.mktemp("server"), free_port())
    running.start()
    yield running
    running.kill()


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _space(tmp_path: Path, samples: int = 2, epochs: int = EPOCHS, concurrency: int = 1, **changes) -> Path:
    """A tiny baseline search (about a second an epoch on one core)."""
    raw = {"recipe": "baseline",
           "fixed": {"model": "tiny", "epochs": epochs, "batch_size": 2, "optimizer": "adam", "loss_reduction": "mean",
                     "best_by": "val_dice"},
           "params": {"lr": {"type": "loguniform", "low": 1e-3, "high": 1e-2}},
           "search": {"sampler": "random", "scheduler": "fifo", "samples": samples, "concurrency": concurrency,
                      "seed": 0},
           "resources": {"cpu": 1, "gpu": 0}}
    for key, value in changes.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and key in raw else value
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _args(space: Path, data: Path, uri: str, tmp_path: Path, cache: Path, name: str = "s") -> list[str]:
    return ["run", str(space), "--data", str(data), "--name", name, "--tracking-uri", uri,
            "--storage", str(tmp_path / "runs"), "--cache-dir", str(cache),
            "--optuna-storage", f"sqlite:///{tmp_path / 'optuna.db'}"]


@pytest.fixture(autouse=True)
def _short_ray_tmp(short_tmp, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's `lvsearch` processes start their Ray in a short folder of their own (RAY_TMPDIR)."""
    monkeypatch.setenv("RAY_TMPDIR", str(short_tmp("lvr")))


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "LVSEARCH_TRACKING_WAIT_S": "20"}


def _start(args: list[str], tmp_path: Path, log: str = "run.log", env: dict | None = None) -> subprocess.Popen:
    handle = (tmp_path / log).open("w")
    return subprocess.Popen([str(BIN / "lvsearch"), *args], stdout=handle, stderr=subprocess.STDOUT, text=True,
                            env=env or _env())


def _read(path: Path) -> str:
    """A console log: libraries (OpenCV's decoders, Ray's C++ core) may write any bytes to it."""
    return path.read_text(errors="replace")


def _finish(process: subprocess.Popen, tmp_path: Path, log: str = "run.log", timeout: float = 300) -> tuple[int, str]:
    code = process.wait(timeout)
    return code, _read(tmp_path / log)


def _wait_for(condition, timeout: float = 180, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def _runs(uri: str) -> list:
    mlflow = tracking.client(uri)
    experiment = tracking.find_experiment(mlflow)
    return [] if experiment is None else mlflow.search_runs([experiment], max_results=10_000)


def _search(uri: str, name: str):
    mlflow = tracking.client(uri)
    parent = tracking.find_search_run(mlflow, uri, name)
    return parent, tracking.trial_runs(mlflow, uri, parent.info.run_id)


def _check_ended_once(uri: str, name: str, trials: int, epochs: int = EPOCHS) -> list:
    """No run RUNNING; one child per trial; every completed child has epochs 1..N once each."""
    assert [r.info.run_name for r in _runs(uri) if r.info.status == "RUNNING"] == []
    _, children = _search(uri, name)
    assert len(children) == trials and len({c.data.tags[tracking.TRIAL_TAG] for c in children}) == trials
    mlflow = tracking.client(uri)
    for child in children:
        status = Status.parse(child.data.tags[tracking.STATUS_TAG])
        if status.kind == "completed":
            steps = [m.step for m in mlflow.get_metric_history(child.info.run_id, "val_dice")]
            assert sorted(steps) == list(range(1, epochs + 1)), (child.info.run_name, sorted(steps))
    return children


def _one_line(output: str) -> None:
    assert "Traceback" not in output, output[-3000:]


# ---- nothing starts: one line, exit 2, nothing left behind -----------------------------------


def _broken_avi(root: Path, tmp_path: Path) -> Path:
    copy = Path(shutil.copytree(root, tmp_path / "broken"))
    video = sorted((copy / "Videos").iterdir())[3]
    video.write_bytes(video.read_bytes()[:2000])
    return copy


BAD_INPUTS = {
    "metric typo": (lambda tmp, root: ({"metric": "val_dcie"}, root), "metric: 'val_dcie' is not reported by baseline"),
    "missing data folder": (lambda tmp, root: ({}, tmp / "nowhere"), "FileList.csv not found"),
    "no FileList.csv": (lambda tmp, root: ({}, Path(shutil.copytree(root, tmp / "nofl", ignore=lambda d, f: [
        "FileList.csv"]))), "FileList.csv not found"),
    "truncated AVI": (lambda tmp, root: ({}, _broken_avi(root, tmp)), "could not be used"),
    "64 CPUs a trial": (lambda tmp, root: ({"resources": {"cpu": 64}}, root), "a trial asks for cpu 64"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
@SECOND_HALF
def test_bad_input_starts_nothing_and_leaves_nothing(case: str, ray_local, server: Server, synthetic_root: Path,
                                                      shared_cache: Path, tmp_path: Path, capsys) -> None:
    make, message = BAD_INPUTS[case]
    changes, data = make(tmp_path, synthetic_root)
    before = {r.info.run_id for r in _runs(server.store)}
    name = f"bad-{len(before)}"
    assert main(_args(_space(tmp_path, **changes), data, server.uri, tmp_path, shared_cache, name)) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert {r.info.run_id for r in _runs(server.store)} == before  # no parent run, no child
    assert not (tmp_path / "runs" / name).exists()  # no search folder: the same command can run again


@FIRST_HALF
def test_a_tracking_server_that_is_not_there_fails_within_seconds(synthetic_root: Path, shared_cache: Path,
                                                                   tmp_path: Path, capsys, free_port) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    assert main(_args(_space(tmp_path), synthetic_root, uri, tmp_path, shared_cache)) == 2
    assert time.monotonic() - started < 15
    err = capsys.readouterr().err
    assert f"tracking store {uri} does not answer" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


@SECOND_HALF
def test_a_ray_address_that_does_not_answer_fails_within_seconds(server: Server, synthetic_root: Path,
                                                                  shared_cache: Path, tmp_path: Path, capsys,
                                                                  free_port) -> None:
    address = f"127.0.0.1:{free_port()}"
    before = len(_runs(server.store))
    code = subprocess.run([str(BIN / "lvsearch"), *_args(_space(tmp_path), synthetic_root, server.uri, tmp_path,
                                                         shared_cache), "--address", address],
                          capture_output=True, text=True, timeout=120, env=_env())
    assert code.returncode == 2 and f"no Ray cluster answers at {address}" in code.stderr, code.stderr[-2000:]
    _one_line(code.stdout + code.stderr)
    assert len(_runs(server.store)) == before and not (tmp_path / "runs" / "s").exists()


# ---- it ran: every run ends, and the exit code says how ----------------------------------------


@SECOND_HALF
def test_every_trial_failing_is_exit_1_with_failed_runs(server: Server, synthetic_root: Path, shared_cache: Path,
                                                        tmp_path: Path) -> None:
    space = _space(tmp_path, fixed={"backbone_weights": str(tmp_path / "missing.pt")})
    code, output = _finish(_start(_args(space, synthetic_root, server.uri, tmp_path, shared_cache, "allfail"),
                                  tmp_path), tmp_path)
    assert code == 1, output[-3000:]
    _one_line(output)
    assert "search allfail failed: 2 of 2 trials failed" in output and "missing.pt" in output
    lines = output.splitlines()  # synthetic data: said before any trial, and again over the table
    notes = [i for i, line in enumerate(lines) if line.startswith("NOTE: SYNTHETIC data")]
    assert len(notes) == 2 and notes[0] < min(i for i, line in enumerate(lines) if " started " in line), output
    parent, children = _search(server.store, "allfail")
    assert parent.info.status == "FAILED" and parent.data.tags[tracking.STATUS_TAG].startswith("failed: 2 of 2")
    assert {c.info.status for c in children} == {"FAILED"} and len(children) == 2
    assert all("FileNotFoundError" in c.data.tags[tracking.STATUS_TAG] for c in children)
    mlflow = tracking.client(server.uri)  # the traceback is kept with the trial, not printed
    assert all("error.txt" in {a.path for a in mlflow.list_artifacts(c.info.run_id)} for c in children)


@pytest.mark.parametrize("signum, code", [pytest.param(signal.SIGINT, 130, marks=FIRST_HALF),
                                          pytest.param(signal.SIGTERM, 143, marks=SECOND_HALF)],
                         ids=["ctrl-c", "sigterm"])
def test_a_signal_ends_every_run_and_resume_finishes_the_search(signum: int, code: int, server: Server,
                                                                synthetic_root: Path, shared_cache: Path,
                                                                tmp_path: Path) -> None:
    name = f"signal-{signum}"
    args = _args(_space(tmp_path, samples=3), synthetic_root, server.uri, tmp_path, shared_cache, name)
    run = _start(args, tmp_path)
    _wait_for(lambda: _read(tmp_path / "run.log").count(" completed  ") >= 1 or run.poll() is not None,
              what="the first trial to complete")
    run.send_signal(signum)
    exit_code, output = _finish(run, tmp_path)
    assert exit_code == code, output[-3000:]
    _one_line(output)
    assert f"`lvsearch resume {name}` continues it" in output
    parent, children = _search(server.store, name)
    assert parent.info.status == "KILLED" and parent.data.tags[tracking.STATUS_TAG] == "interrupted"
    assert "RUNNING" not in {c.info.status for c in children}
    resumed = subprocess.run([str(BIN / "lvsearch"), "resume", name, "--tracking-uri", server.uri, "--storage",
                              str(tmp_path / "runs")], capture_output=True, text=True, timeout=300, env=_env())
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-2000:]
    assert f"search {name} was interrupted:" in resumed.stdout and "trials remain" in resumed.stdout
    _check_ended_once(server.store, name, trials=3)
    parent, _ = _search(server.store, name)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["trials_completed"] == 3 and parent.data.metrics["trials_interrupted"] == 0
    assert parent.data.metrics["trials_running"] == 0  # rewritten at the end of the resume
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE"] * 3  # the same study, continued


def _pid_of_a_running_trial(uri: str, name: str) -> tuple[str, int]:
    mlflow = tracking.client(uri)
    try:
        children = _search(uri, name)[1]
    except LookupError:  # not started yet
        return "", 0
    for child in children:
        if child.info.status == "RUNNING" and mlflow.get_metric_history(child.info.run_id, "val_dice"):
            return child.info.run_id, int(child.data.tags["lvsearch.pid"])
    return "", 0


@SECOND_HALF
def test_a_trial_whose_worker_is_killed_is_retried_from_its_checkpoint(server: Server, synthetic_root: Path,
                                                                        shared_cache: Path, tmp_path: Path) -> None:
    epochs = 6
    args = _args(_space(tmp_path, samples=1, epochs=epochs), synthetic_root, server.uri, tmp_path, shared_cache,
                 "killed-worker")
    run = _start(args, tmp_path)
    run_id, pid = "", 0
    deadline = time.monotonic() + 180
    while not pid and run.poll() is None and time.monotonic() < deadline:
        run_id, pid = _pid_of_a_running_trial(server.uri, "killed-worker")
        time.sleep(0.2)
    assert pid, "no trial with an epoch logged"
    os.kill(pid, signal.SIGKILL)
    code, output = _finish(run, tmp_path)
    assert code == 0, output[-3000:]
    assert "worker died; retrying from its last checkpoint" in output
    (child,) = _check_ended_once(server.store, "killed-worker", trials=1, epochs=epochs)
    assert child.info.run_id == run_id and child.data.tags[tracking.STATUS_TAG] == "completed"
    assert int(child.data.tags["lvsearch.pid"]) != pid  # it finished in another worker


@SECOND_HALF
def test_a_tracking_outage_mid_search_loses_and_doubles_nothing(synthetic_root: Path, shared_cache: Path,
                                                                 tmp_path: Path, free_port) -> None:
    server = Server(tmp_path / "own-server", free_port())
    server.work.mkdir()
    server.start()
    epochs = 8
    args = [*_args(_space(tmp_path, samples=2, epochs=epochs, concurrency=2), synthetic_root, server.uri, tmp_path,
                   shared_cache, "outage"), "--verbose"]
    run = _start(args, tmp_path, env={**_env(), "LVSEARCH_TRACKING_WAIT_S": "60"})
    try:
        _wait_for(lambda: "epoch 1/" in _read(tmp_path / "run.log") or run.poll() is not None,
                  what="the first epoch")
        server.kill()
        down = time.time()
        _wait_for(lambda: _read(tmp_path / "run.log").count("epoch 4/") >= 2 or run.poll() is not None,
                  what="two trials training on through the outage")
        server.start()
        up = time.time()
        code, output = _finish(run, tmp_path)
    finally:
        server.kill()
    assert code == 0, output[-3000:]
    _one_line(output)
    children = _check_ended_once(server.store, "outage", trials=2, epochs=epochs)
    mlflow = tracking.client(server.store)
    during = [m for c in children for m in mlflow.get_metric_history(c.info.run_id, "val_dice")
              if down * 1000 < m.timestamp < up * 1000]
    assert during, "no epoch was trained while the server was down"
    assert all(c.data.tags[tracking.STATUS_TAG] == "completed" for c in children)


@FIRST_HALF
def test_a_server_down_at_the_end_is_synced_later(synthetic_root: Path, shared_cache: Path, tmp_path: Path,
                                                  free_port) -> None:
    server = Server(tmp_path / "own-server", free_port())
    server.work.mkdir()
    server.start()
    args = [*_args(_space(tmp_path, samples=2, epochs=3), synthetic_root, server.uri, tmp_path, shared_cache, "later"),
            "--verbose"]
    env = {**_env(), "LVSEARCH_TRACKING_WAIT_S": "2"}
    run = _start(args, tmp_path, env=env)
    try:
        _wait_for(lambda: "epoch 1/" in _read(tmp_path / "run.log") or run.poll() is not None,
                  what="the first epoch")
        server.kill()
        code, output = _finish(run, tmp_path)
        assert code == 1, output[-3000:]
        _one_line(output)
        assert "`lvsearch sync later` sends them" in output
        server.start()
        synced = subprocess.run([str(BIN / "lvsearch"), "sync", "later", "--storage", str(tmp_path / "runs")],
                                capture_output=True, text=True, timeout=120, env=env)
    finally:
        server.kill()
    assert synced.returncode == 0, synced.stdout + synced.stderr
    _check_ended_once(server.store, "later", trials=2, epochs=3)
    parent, _ = _search(server.store, "later")
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_completed"] == 2


@FIRST_HALF
def test_a_driver_killed_with_sigkill_is_reported_and_resumed(server: Server, synthetic_root: Path,
                                                               shared_cache: Path, tmp_path: Path) -> None:
    env = _env()
    args = _args(_space(tmp_path, samples=3, epochs=3), synthetic_root, server.uri, tmp_path, shared_cache, "sigkill")
    run = _start(args, tmp_path, env=env)
    _wait_for(lambda: _read(tmp_path / "run.log").count(" completed  ") >= 1 or run.poll() is not None,
              what="the first trial to complete")
    run.send_signal(signal.SIGKILL)
    run.wait(30)
    subprocess.run(["pkill", "-9", "-f", env["RAY_TMPDIR"]], check=False)  # the local Ray it left behind
    listed = subprocess.run([str(BIN / "lvsearch"), "list", "--tracking-uri", server.uri], capture_output=True,
                            text=True, timeout=120, env=env)
    assert listed.returncode == 0 and "sigkill was interrupted:" in listed.stdout and "trials remain" in listed.stdout
    resumed = subprocess.run([str(BIN / "lvsearch"), "resume", "sigkill", "--tracking-uri", server.uri, "--storage",
                              str(tmp_path / "runs")], capture_output=True, text=True, timeout=300, env=_env())
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-2000:]
    assert "search sigkill was interrupted:" in resumed.stdout
    assert [r.info.run_name for r in _runs(server.store) if r.info.status == "RUNNING"] == []
    parent, children = _search(server.store, "sigkill")
    assert parent.info.status == "FINISHED" and len({c.data.tags[tracking.TRIAL_TAG] for c in children}) == len(
        children)
    statuses = sorted(c.data.tags[tracking.STATUS_TAG] for c in children)
    # a trial Tune had not saved before its driver died is drawn again; its first run says why
    assert statuses.count("completed") == 3
    assert set(statuses) <= {"completed", "interrupted: its driver was killed"}


@FIRST_HALF
def test_a_truncated_frame_store_is_rebuilt_with_a_warning(server: Server, synthetic_root: Path,
                                                           tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    images = load_store(synthetic_root, cache, progress=False).path / "images.npy"
    with images.open("r+b") as handle:
        handle.truncate(images.stat().st_size // 3)
    code, output = _finish(_start(_args(_space(tmp_path, samples=1, epochs=1), synthetic_root, server.uri, tmp_path,
                                        cache, "after-truncation"), tmp_path), tmp_path)
    assert code == 0, output[-3000:]
    assert f"{images} has" in output and "rebuilding" in output
    _check_ended_once(server.store, "after-truncation", trials=1, epochs=1)


@SECOND_HALF
def test_videos_left_out_with_allow_missing_are_named(server: Server, synthetic_root: Path, tmp_path: Path) -> None:
    data = _broken_avi(synthetic_root, tmp_path)
    broken = sorted((data / "Videos").iterdir())[3].stem
    args = [*_args(_space(tmp_path, samples=1, epochs=1), data, server.uri, tmp_path, tmp_path / "cache", "skip"),
            "--allow-missing"]
    code, output = _finish(_start(args, tmp_path), tmp_path)
    assert code == 0, output[-3000:]
    assert f"{broken}: does not decode" in output
    parent, _ = _search(server.store, "skip")
    assert parent.data.tags["skipped_videos"] == "1"
    listed = tracking.client(server.uri).download_artifacts(parent.info.run_id, "skipped_videos.txt", str(tmp_path))
    assert broken in Path(listed).read_text()
