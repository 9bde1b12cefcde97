from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lvseg.echonet import EchoNet, read_tracings
from lvseg.synth import FILELIST_HEADER, PIXEL_SPACING_CM, SHORTEST, assign_splits, write_synthetic
from lvseg.video import read_video
from lvseg.volumes import discs_volume, ejection_fraction


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path) -> None:
    a = write_synthetic(tmp_path / "a", videos=3, seed=7)
    b = write_synthetic(tmp_path / "b", videos=3, seed=7)
    c = write_synthetic(tmp_path / "c", videos=3, seed=8)
    for name in ("FileList.csv", "VolumeTracings.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
        assert (a / name).read_bytes() != (c / name).read_bytes()
    for video in (a / "Videos").iterdir():
        assert video.read_bytes() == (b / "Videos" / video.name).read_bytes()


def test_filelist_has_the_release_header_and_consistent_volumes(synthetic_root: Path) -> None:
    filelist = pd.read_csv(synthetic_root / "FileList.csv")
    assert list(filelist.columns) == FILELIST_HEADER
    tracings = read_tracings(synthetic_root)
    for row in filelist.itertuples():
        (es_frame, es), (ed_frame, ed) = tracings[row.FileName]
        esv, edv = discs_volume(es, PIXEL_SPACING_CM), discs_volume(ed, PIXEL_SPACING_CM)
        assert pytest.approx((esv, edv), abs=1e-3) == (row.ESV, row.EDV)
        assert pytest.approx(float(ejection_fraction(edv, esv)), abs=1e-3) == row.EF
        assert 15 < row.EF < 80 and esv < edv  # ES listed first: the smaller ventricle
        assert len(es) == len(ed) == 21  # long axis + 20 chords
        assert max(es_frame, ed_frame) < row.NumberOfFrames


def test_videos_are_112_px_mjpg_with_the_listed_frame_count(synthetic_root: Path) -> None:
    filelist = pd.read_csv(synthetic_root / "FileList.csv")
    row = filelist.iloc[0]
    frames = read_video(synthetic_root / "Videos" / f"{row.FileName}.avi")
    assert frames.shape == (row.NumberOfFrames, 112, 112, 3)
    assert (synthetic_root / "Videos" / f"{row.FileName}.avi").read_bytes()[8:12] == b"AVI "


def test_the_traced_lv_is_the_dark_cavity_and_other_dark_chambers_exist(synthetic_root: Path) -> None:
    for sample in list(EchoNet(synthetic_root, "all"))[:6]:
        grey = sample.image[..., 0].astype(float)
        inside, outside = grey[sample.mask], grey[~sample.mask & (grey > 0)]
        assert inside.mean() < 0.5 * outside.mean()
        dark_elsewhere = (grey < 25) & ~sample.mask
        assert dark_elsewhere.sum() > 0.5 * sample.mask.sum()  # "the dark region" is ambiguous


def test_the_lv_contracts_between_ed_and_es(synthetic_root: Path) -> None:
    samples = list(EchoNet(synthetic_root, "all"))
    for es, ed in zip(samples[::2], samples[1::2], strict=True):
        assert es.mask.sum() < ed.mask.sum()


@pytest.mark.parametrize("count, shares", [(8, (6, 1, 1)), (40, (30, 5, 5)), (50, (38, 6, 6)), (2, (2, 0, 0))])
def test_split_shares(count: int, shares: tuple[int, int, int]) -> None:
    splits = assign_splits(count, np.random.default_rng(0))
    assert tuple(splits.count(s) for s in ("TRAIN", "VAL", "TEST")) == shares


def test_rejects_zero_videos(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        write_synthetic(tmp_path, videos=0)


@pytest.mark.parametrize("frames", [(SHORTEST, SHORTEST), (60, 66)])
def test_videos_are_as_long_as_asked_with_a_distinct_es_and_ed(tmp_path: Path, frames: tuple[int, int]) -> None:
    """`lvseg synth --frames MIN:MAX` (bench/scale.py draws EchoNet-Dynamic-like lengths with it)."""
    root = write_synthetic(tmp_path, videos=4, seed=3, frames=frames)
    filelist = pd.read_csv(root / "FileList.csv")
    assert filelist.NumberOfFrames.between(*frames).all()
    for row in filelist.itertuples():
        assert len(read_video(root / "Videos" / f"{row.FileName}.avi")) == row.NumberOfFrames
    samples = list(EchoNet(root, "all"))
    assert len(samples) == 2 * len(filelist)  # every video kept: two traced frames each
    for es, ed in zip(samples[::2], samples[1::2], strict=True):
        assert es.frame != ed.frame and es.mask.sum() < ed.mask.sum()


@pytest.mark.parametrize("frames", [(SHORTEST - 1, 20), (30, 29)])
def test_rejects_an_impossible_frame_range(tmp_path: Path, frames: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match=f"frames must be MIN:MAX with {SHORTEST} <= MIN <= MAX"):
        write_synthetic(tmp_path, videos=1, frames=frames)
    assert not (tmp_path / "FileList.csv").exists()
