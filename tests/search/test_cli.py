from __future__ import annotations

from pathlib import Path

import pytest

from search.cli import main


def test_a_bad_space_is_one_error_naming_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = tmp_path / "bad.yaml"
    space.write_text("recipe: baseline\nparams:\n  lr: {type: loguniform, low: 0, high: 1}\n")
    assert main(["run", str(space), "--data", str(tmp_path)]) == 2
    assert "bad.yaml: params.lr.low: a log scale needs low > 0" in capsys.readouterr().err


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
