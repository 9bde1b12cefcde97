from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lvseg.video import VideoDecodeError, read_video, write_video


def _frames(count: int = 6) -> np.ndarray:
    ramp = np.linspace(0, 255, 32, dtype=np.uint8)
    return np.stack([np.roll(np.tile(ramp, (32, 1)), i * 4, axis=1) for i in range(count)])[..., None].repeat(3, -1)


def test_round_trip_keeps_shape_order_and_content(tmp_path: Path) -> None:
    frames = _frames()
    write_video(tmp_path / "v.avi", frames)
    decoded = read_video(tmp_path / "v.avi")
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - frames).mean() < 4  # MJPG is lossy, but barely here


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere.avi"):
        read_video(tmp_path / "nothere.avi")
    (tmp_path / "bad.avi").write_bytes(b"\x00" * 500)
    with pytest.raises(VideoDecodeError, match="bad.avi"):
        read_video(tmp_path / "bad.avi")


def test_write_rejects_non_rgb_uint8(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "v.avi", np.zeros((2, 8, 8), np.float32))
