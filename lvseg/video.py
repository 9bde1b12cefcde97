"""AVI reading and writing with OpenCV, in the layout the EchoNet reference uses.

Frames are returned as uint8 arrays of shape (F, H, W, 3) in RGB order (OpenCV decodes BGR;
the reference converts, and so do we, so that pixel values match it exactly).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np


class VideoDecodeError(ValueError):
    """An AVI that cannot be opened or decoded; the message names the file."""


def read_video(path: str | Path) -> np.ndarray:
    """Decode every frame of ``path``. Returns uint8 (F, H, W, 3) RGB."""
    frames = list(_iter_frames(Path(path)))
    if not frames:
        raise VideoDecodeError(f"{path}: no frame could be decoded (corrupt or empty AVI)")
    return np.stack(frames)


def _iter_frames(path: Path) -> Iterator[np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise VideoDecodeError(f"{path}: OpenCV cannot open this file as a video")
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def write_video(path: str | Path, frames: np.ndarray, fps: float = 50.0) -> None:
    """Write uint8 (F, H, W, 3) RGB frames as an MJPG AVI, the EchoNet-Dynamic container."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (F, H, W, 3), got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"{path}: OpenCV could not open an MJPG writer")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
