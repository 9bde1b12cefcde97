from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from search.cli import build_parser, main


def test_a_bad_space_is_one_error_naming_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = tmp_path / "bad.yaml"
    space.write_text("recipe: baseline\nparams:\n  lr: {type: loguniform, low: 0, high: 1}\n")
    assert main(["run", str(space), "--data", str(tmp_path)]) == 2
    assert "bad.yaml: params.lr.low: a log scale needs low > 0" in capsys.readouterr().err


def test_a_bad_space_is_reported_before_mlflow_is_imported(tmp_path: Path) -> None:
    """Checking a space needs the recipes (torch), not MLflow: a mistyped space is reported ~2 s
    sooner. Run in a fresh interpreter: this one has loaded everything already."""
    space = tmp_path / "bad.yaml"
    space.write_text("recipe: baseline\nparams:\n  lr: {type: loguniform, low: 1e-4}\n")
    probe = (f"import sys; from search.cli import main; code = main({['run', str(space)]!r}); "
             "print(code, 'mlflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split("\n")[-2] == "2 False", done.stdout + done.stderr
    assert "bad.yaml: params.lr.high: expected a finite number, got None" in done.stderr


# A command as the console script runs it (argv as JSON): a local Ray starts in the background at
# launch (search.localray).
# The process is made a subreaper, so that a Ray process orphaned by a careless stop stays its
# descendant and is seen; it then reports what is left once the command has returned.
# With "ctrl-c", the process sends itself SIGINT while it prints its error line, as CI once did
# by chance: a real signal, timed where it raised a traceback.
AT_LAUNCH = """
import ctypes, json, os, signal, sys, time
from pathlib import Path
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
from search.cli import main

class SignalInErrorLine:
    def __init__(self, stream):
        self.stream = stream
    def write(self, text):
        written = self.stream.write(text)
        if ": error:" in text:
            os.kill(os.getpid(), signal.SIGINT)
        return written
    def __getattr__(self, name):
        return getattr(self.stream, name)

if sys.argv[2:] == ["ctrl-c"]:
    sys.stderr = SignalInErrorLine(sys.stderr)
code = main(json.loads(sys.argv[1]), ray_at_launch=True)

def descendants():
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except OSError:
            continue
        if state != "Z":
            parents.setdefault(int(ppid), []).append(int(stat.parent.name))
    found, todo = [], [os.getpid()]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found

deadline = time.monotonic() + 10
while descendants() and time.monotonic() < deadline:
    time.sleep(0.2)
def command(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()[:80].replace(b"\\0", b" ").decode(errors="replace")
    except OSError:
        return f"{pid} (ended meanwhile)"

import ray
sessions = len(list(Path(os.environ["RAY_TMPDIR"]).glob("ray/session_2*")))
print(json.dumps({"code": code, "ray_up": ray.is_initialized(), "sessions": sessions,
                  "left": [command(pid) for pid in descendants()]}))
"""


def _at_launch(argv: list[str], tmp: Path, *options: str) -> tuple[dict, list[str]]:
    """What :data:`AT_LAUNCH` saw (exit code, Ray's state and sessions, processes left), and stderr's lines."""
    env = {**os.environ, "RAY_TMPDIR": str(tmp)}
    done = subprocess.run([sys.executable, "-c", AT_LAUNCH, json.dumps(argv), *options], capture_output=True,
                          text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1]), done.stderr.strip().splitlines()


@pytest.mark.parametrize("ctrl_c", [False, True], ids=["waited", "ctrl-c in the error line"])
def test_a_search_that_cannot_start_stops_the_ray_it_started_at_launch(ctrl_c: bool, short_tmp,
                                                                       tmp_path: Path) -> None:
    """`lvsearch run` starts its local Ray in the background at launch. A bad space ends the
    command before it needs Ray: exit 2 with one line, and every process of that Ray stopped. A
    Ctrl-C from the error line on (it comes before the wait for that Ray) is said in one more line
    and cuts neither the line nor the stop short: it raised a traceback, and a cut stop left Ray's
    agents running for a minute."""
    space = tmp_path / "bad.yaml"
    space.write_text("recipe: baseline\nparams:\n  lr: {type: loguniform, low: 1e-4}\n")
    seen, lines = _at_launch(["run", str(space)], short_tmp("lvs-bad-"), *(["ctrl-c"] if ctrl_c else []))
    assert lines == [
        f"lvsearch run: error: {space}: params.lr.high: expected a finite number, got None",
        *(["lvsearch run: interrupted (SIGINT): stopping Ray first (again to leave at once)"] if ctrl_c else [])]
    assert seen["code"] == 2 and seen["sessions"] == 1, seen  # Ray had started: the stop is tested
    assert not seen["ray_up"] and seen["left"] == [], seen


def test_the_demo_starts_its_ray_at_launch_and_stops_it_when_it_cannot_go_on(short_tmp, tmp_path: Path) -> None:
    """`lvsearch demo` starts its Ray while it writes the synthetic folder (4-8 s sooner in all);
    an --out it cannot write is one line, exit 2, and no Ray left."""
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "out"
    seen, lines = _at_launch(["demo", "--out", str(out), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"],
                             short_tmp("lvs-demo-"))
    assert len(lines) == 1 and lines[0].startswith("lvsearch demo: error:") and str(out) in lines[0], lines
    assert seen["code"] == 2 and seen["sessions"] == 1, seen
    assert not seen["ray_up"] and seen["left"] == [], seen


def test_resume_of_an_unknown_search_says_where_it_looked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["resume", "nothing", "--storage", str(tmp_path)]) == 2
    assert f"no search 'nothing' under {tmp_path}" in capsys.readouterr().err


def test_a_search_today_s_recipe_refuses_cannot_be_resumed_and_says_why(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A search run under an older version whose recipe had a head this one dropped: one line, exit
    2, before any store or Ray is touched (the tracking URI points nowhere)."""
    from search.state import SearchState

    text = yaml.safe_dump({"recipe": "dinov2_probe", "fixed": {"backbone": "tiny"},
                           "params": {"head": {"type": "choice", "values": ["linear", "mlp"]}}})
    SearchState("old", "old.yaml", text, "data", "cache", f"sqlite:///{tmp_path / 'absent' / 'm.db'}", "0" * 32,
                4).save(tmp_path)
    assert main(["resume", "old", "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "search old cannot be resumed: today's dinov2_probe recipe refuses the space it ran " \
        "with (old.yaml: params.head: value 'mlp'" in err[0], err
    assert "`lvsearch report` and `lvsearch export` still work on it" in err[0] and not (tmp_path / "absent").exists()


@pytest.mark.parametrize("command", [["list"], ["export", "s", "--out", "x.yaml"], ["ui"]])
def test_read_only_commands_create_no_store(command: list[str], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"sqlite:///{tmp_path / 'sub' / 'mlruns.db'}"
    assert main([*command, "--tracking-uri", uri]) == 2
    assert f"no tracking store at {uri}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # neither the database nor its folder


@pytest.mark.parametrize("command", [["list"], ["export", "s", "--out", "x.yaml"]])
def test_reading_commands_load_neither_torch_nor_ray(command: list[str], tmp_path: Path) -> None:
    """`lvsearch list` took ~8 s when the CLI's imports pulled in torch, Ray Tune and Optuna; it
    needs MLflow only. Run in a fresh interpreter: this one has loaded everything already."""
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    probe = (f"import sys; from search.cli import main; code = main({[*command, '--tracking-uri', uri]!r}); "
             "print(code, sorted(m for m in ('torch', 'ray', 'optuna') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split("\n")[-2] == "2 []", done.stdout + done.stderr


@pytest.mark.parametrize("command", [["run", "space.yaml"], ["resume", "s"]])
def test_ray_address_in_the_environment_is_the_default_address(command: list[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's convention, on which `ray job submit` relies to point its entrypoint at the cluster:
    RAY_ADDRESS is the address unless --address is given (which joins it: test_failures.py)."""
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert build_parser().parse_args(command).address == "10.0.0.1:6379"
    assert build_parser().parse_args([*command, "--address", "auto"]).address == "auto"
    monkeypatch.setenv("RAY_ADDRESS", "")
    assert build_parser().parse_args(command).address is None  # a local Ray
