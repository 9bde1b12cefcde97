from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from search.cli import main


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


def test_resume_of_an_unknown_search_says_where_it_looked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["resume", "nothing", "--storage", str(tmp_path)]) == 2
    assert f"no search 'nothing' under {tmp_path}" in capsys.readouterr().err


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
