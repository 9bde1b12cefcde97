from __future__ import annotations

from pathlib import Path

import pytest

from lvseg.cli import main


def test_synth_then_cache_then_preview(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, cache = tmp_path / "data", tmp_path / "cache"
    assert main(["synth", str(root), "--videos", "4", "--seed", "1"]) == 0
    assert "not echocardiograms" in capsys.readouterr().out
    assert main(["cache", str(root), "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "videos   4: train 2, val 1, test 1" in out and "8 traced frames of 112x112" in out
    png = tmp_path / "p.png"
    assert main(["preview", str(root), "--cache-dir", str(cache), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_folder_is_a_one_line_error_and_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", str(tmp_path / "nowhere"), "--cache-dir", str(tmp_path)]) == 2
    assert "lvseg cache: error:" in capsys.readouterr().err


def test_demo_writes_data_store_and_preview(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path), "--videos", "4"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "preview.png").is_file() and (tmp_path / "synthetic-echonet" / "FileList.csv").is_file()
    assert "frame store ready" in out and "nothing measured on them is a result" in out
