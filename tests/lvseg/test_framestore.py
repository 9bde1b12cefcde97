from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lvseg import decode
from lvseg.echonet import DataFormatError, EchoNet
from lvseg.framestore import FrameStore, load_store, source_hash
from lvseg.video import read_video


@pytest.fixture
def folder(synthetic_root: Path, tmp_path: Path) -> Path:
    """A private copy of the synthetic folder that a test may change."""
    return Path(shutil.copytree(synthetic_root, tmp_path / "echonet"))


def _no_decoding(*args, **kwargs):
    raise AssertionError("the store was decoded again")


def test_store_serves_exactly_what_the_reference_reader_decodes(synthetic_root: Path, cache_dir: Path) -> None:
    store = load_store(synthetic_root, cache_dir, progress=False)
    reference = EchoNet(synthetic_root, "all")
    assert len(store) == len(reference.videos) == 16
    for index, sample in enumerate(reference):
        video, phase = divmod(index, 2)
        assert store.table["video"][video] == sample.video
        np.testing.assert_array_equal(store.images[video, phase], sample.image)
        np.testing.assert_array_equal(store.masks[video, phase], sample.mask)
    assert isinstance(store.images, np.memmap)


def test_parallel_and_serial_builds_agree(synthetic_root: Path, tmp_path: Path) -> None:
    serial = load_store(synthetic_root, tmp_path / "a", workers=1, progress=False)
    parallel = load_store(synthetic_root, tmp_path / "b", workers=2, progress=False)
    np.testing.assert_array_equal(serial.images, parallel.images)
    np.testing.assert_array_equal(serial.masks, parallel.masks)
    np.testing.assert_array_equal(serial.tracings, parallel.tracings)


def test_frames_of_a_split_are_flattened_es_then_ed(synthetic_root: Path, cache_dir: Path) -> None:
    store = load_store(synthetic_root, cache_dir, progress=False)
    val = store.frames("VAL")
    index = store.video_indices("val")
    assert len(val) == 2 * len(index) and list(val.phases[:2]) == ["ES", "ED"]
    np.testing.assert_array_equal(val.images[1], store.images[index[0], 1])
    assert val.videos[0] == val.videos[1] == store.table["video"][index[0]]
    assert val.ef[0] == store.table["ef"][index[0]]
    assert sum(len(store.video_indices(s)) for s in ("train", "val", "test")) == len(store)


def test_train_statistics_cover_every_frame_of_the_train_videos(synthetic_root: Path, cache_dir: Path) -> None:
    store = load_store(synthetic_root, cache_dir, progress=False)
    names = store.table.loc[store.table["split"] == "train", "video"]
    pixels = np.concatenate([read_video(synthetic_root / "Videos" / f"{n}.avi").reshape(-1, 3) for n in names])
    np.testing.assert_allclose(store.mean, pixels.mean(0), rtol=1e-5)
    np.testing.assert_allclose(store.std, pixels.std(0), rtol=1e-4)


def test_unchanged_folder_is_never_decoded_twice(folder: Path, cache_dir: Path, monkeypatch) -> None:
    first = load_store(folder, cache_dir, progress=False)
    monkeypatch.setattr(decode, "decode_all", _no_decoding)
    assert load_store(folder, cache_dir, progress=False).path == first.path


def test_changed_folder_gets_a_new_store(folder: Path, cache_dir: Path) -> None:
    first = load_store(folder, cache_dir, progress=False)
    filelist = folder / "FileList.csv"
    filelist.write_text(filelist.read_text().replace("TRAIN", "VAL", 1))
    second = load_store(folder, cache_dir, progress=False)
    assert second.path != first.path and second.hash == source_hash(folder)
    assert (second.table["split"] == "val").sum() == (first.table["split"] == "val").sum() + 1


def test_interrupted_build_leaves_no_store(folder: Path, cache_dir: Path, monkeypatch) -> None:
    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(decode, "write_arrays", crash)
    with pytest.raises(KeyboardInterrupt):
        load_store(folder, cache_dir, progress=False)
    assert [p.name for p in cache_dir.iterdir() if not p.name.endswith(".lock")] == []


def test_missing_video_fails_before_decoding(folder: Path, cache_dir: Path, monkeypatch) -> None:
    victim = sorted((folder / "Videos").iterdir())[0]
    victim.unlink()
    monkeypatch.setattr(decode, "decode_all", _no_decoding)
    with pytest.raises(FileNotFoundError, match=f"1 video.*{victim.stem}"):
        load_store(folder, cache_dir, progress=False)


def test_corrupt_video_is_reported_and_the_rest_is_kept(folder: Path, cache_dir: Path, monkeypatch) -> None:
    victim = sorted((folder / "Videos").iterdir())[0]
    victim.write_bytes(b"\x00" * victim.stat().st_size)
    with pytest.raises(DataFormatError, match=f"{victim.stem}: does not decode.*other 15 videos are decoded"):
        load_store(folder, cache_dir, progress=False)
    monkeypatch.setattr(decode, "decode_all", _no_decoding)  # the retry reuses the saved work
    store = load_store(folder, cache_dir, allow_missing=True, progress=False)
    assert len(store) == 15 and "does not decode" in store.excluded[victim.stem]
    assert victim.stem in store.summary()


def test_frame_past_the_end_is_reported_with_the_video(folder: Path, cache_dir: Path) -> None:
    tracings = folder / "VolumeTracings.csv"
    lines = tracings.read_text().splitlines()
    name = lines[1].split(",")[0][:-4]
    ed_rows = [i for i, line in enumerate(lines) if line.startswith(name)][21:]  # ES rows come first
    for i in ed_rows:
        lines[i] = lines[i].rsplit(",", 1)[0] + ",999"
    tracings.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=f"{name}: traced frame 999 is past the end"):
        load_store(folder, cache_dir, progress=False)


def test_excluded_untraced_videos_are_listed(folder: Path, cache_dir: Path) -> None:
    tracings = folder / "VolumeTracings.csv"
    lines = tracings.read_text().splitlines()
    name = lines[1].split(",")[0]
    tracings.write_text("\n".join(line for line in lines if not line.startswith(name)) + "\n")
    store = load_store(folder, cache_dir, progress=False)
    assert len(store) == 15 and "0 traced frame" in store.excluded[name[:-4]]


def test_opening_a_folder_that_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a frame store"):
        FrameStore(tmp_path)


def test_info_records_source_and_build(synthetic_root: Path, cache_dir: Path) -> None:
    store = load_store(synthetic_root, cache_dir, progress=False)
    info = json.loads((store.path / "info.json").read_text())
    assert info["root"] == str(synthetic_root.resolve()) and info["build_seconds"] > 0


def test_a_truncated_store_is_rebuilt_with_a_warning_naming_the_file(synthetic_root: Path, cache_dir: Path,
                                                                     caplog) -> None:
    store = load_store(synthetic_root, cache_dir, progress=False)
    expected = np.array(store.images)
    images = store.path / "images.npy"
    with images.open("r+b") as handle:
        handle.truncate(images.stat().st_size // 2)
    with caplog.at_level("WARNING"):
        again = load_store(synthetic_root, cache_dir, progress=False)
    assert f"{images} has" in caplog.text and "rebuilding" in caplog.text
    np.testing.assert_array_equal(np.array(again.images), expected)
