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


@pytest.mark.parametrize("frames, error", [
    ("abc", "argument --frames: expected MIN:MAX frames, e.g. 100:250, got 'abc'"),
    ("5:9", "frames must be MIN:MAX with 8 <= MIN <= MAX, got 5:9")])
def test_synth_says_what_is_wrong_with_a_frame_range(tmp_path: Path, capsys: pytest.CaptureFixture[str], frames: str,
                                                     error: str) -> None:
    try:
        code = main(["synth", str(tmp_path / "data"), "--videos", "1", "--frames", frames])
    except SystemExit as exit_:  # argparse's own refusal of a value it cannot parse
        code = exit_.code
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"lvseg synth: error: {error}"
    assert not (tmp_path / "data").exists()


def test_synth_one_number_is_every_video_that_long(tmp_path: Path) -> None:
    import pandas as pd

    assert main(["synth", str(tmp_path), "--videos", "2", "--frames", "9"]) == 0
    assert pd.read_csv(tmp_path / "FileList.csv").NumberOfFrames.tolist() == [9, 9]


def test_demo_writes_data_store_and_preview(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path), "--videos", "4"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "preview.png").is_file() and (tmp_path / "synthetic-echonet" / "FileList.csv").is_file()
    assert "frame store ready" in out and "nothing measured on them is a result" in out


def test_train_from_a_config_file_end_to_end(small_store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import pandas as pd
    import torch

    config = tmp_path / "best.yaml"
    config.write_text("recipe: baseline\nmodel: tiny\noptimizer: adam\nlr: 3e-3\nbatch_size: 2\n"
                      "loss_reduction: mean\nepochs: 2\nbest_by: val_dice\n")
    out = tmp_path / "run"
    root = small_store.info["root"]
    args = ["train", str(config), "--data", root, "--out", str(out), "--cache-dir", str(small_store.path.parent)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "NOTE: SYNTHETIC data" in printed and "NOTE: TINY test model" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    for split in ("val", "test"):
        for key in ("dice", "dice_es", "dice_ed", "dice_mean", "ef_mae", "dice_ci_low"):
            assert 0 <= metrics[f"{split}_{key}"] <= (100 if key == "ef_mae" else 1)
    history = pd.read_csv(out / "history.csv")
    best = history[history["epoch"] == metrics["best_epoch"]].iloc[0]
    assert metrics["val_dice"] == pytest.approx(best["val_dice"], abs=1e-9)  # re-evaluated best.pt
    assert set(pd.read_csv(out / "test_per_video_dice.csv").columns) >= {"video", "dice_es", "dice_ed"}
    for png in ("overlay.png", "test_dice_histogram.png", "val_dice_histogram.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert torch.load(out / "best.pt", weights_only=True)["config"]["model"] == "tiny"


def test_train_with_a_bad_config_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("recipe: baseline\nlearning_rate: 0.1\n")
    assert main(["train", str(config), "--data", str(tmp_path)]) == 2
    assert "unknown key(s) for recipe baseline: learning_rate" in capsys.readouterr().err
