"""Fixtures shared by the whole suite: synthetic EchoNet folders built by the tests themselves."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lvseg.synth import write_synthetic
from lvseg.video import write_video

FILELIST_HEADER = "FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split"
FAST_CONFIGS: dict[str, dict] = {  # small, quick configs of every recipe (the contract test checks all are here)
    "baseline": dict(model="tiny", optimizer="adam", lr=3e-3, batch_size=2, loss_reduction="mean", epochs=2),
    "dinov2_probe": dict(backbone="tiny", image_size=112, epochs=2),
    "sam_prompts": dict(model="tiny", strategy="box"),
    "sam_decoder": dict(model="tiny", strategy="box_center", epochs=2, batch_size=2),
}

# The suite starts and stops Ray itself: a cluster named in the developer's environment must not
# take its searches (`lvsearch run` joins RAY_ADDRESS when given no --address).
os.environ.pop("RAY_ADDRESS", None)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`make test` runs two pytest-xdist workers with ``--dist loadgroup``: a module's tests stay
    together (its module fixtures, a search or a server, are built once), unless a test names its
    own group (the failure battery is split in two, its longest part)."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


@pytest.fixture(scope="session")
def fast_configs() -> dict[str, dict]:
    """Every recipe's fast config (without its ``recipe`` key)."""
    return FAST_CONFIGS


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16-video synthetic EchoNet-Dynamic folder (read-only: copy it before changing it)."""
    return write_synthetic(tmp_path_factory.mktemp("synthetic") / "echonet", videos=16, seed=3)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def _square_tracing(x0: float, y0: float, x1: float, y1: float, chords: int = 6) -> np.ndarray:
    """A tracing of the axis-aligned rectangle [x0, x1] x [y0, y1]: long axis down the middle,
    then horizontal chords from the left wall (X1) to the right wall (X2), top to bottom."""
    ys = np.linspace(y0, y1, chords)
    axis = [[(x0 + x1) / 2, y0, (x0 + x1) / 2, y1]]
    return np.array(axis + [[x0, y, x1, y] for y in ys], dtype=float)


@pytest.fixture
def square_tracing() -> Callable[..., np.ndarray]:
    return _square_tracing


@pytest.fixture
def make_folder(tmp_path: Path) -> Callable[..., Path]:
    """Factory for small hand-made EchoNet folders.

    ``videos``: {name: (frames, split)}; ``tracings``: list of (FileName, frame, rows (N, 4))
    written in that order. Videos are random noise AVIs of 32x32.
    """

    def make(videos: dict[str, tuple[int, str]], tracings: list[tuple[str, int, np.ndarray]],
             filelist_names: dict[str, str] | None = None) -> Path:
        root = tmp_path / "folder"
        (root / "Videos").mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        lines = [FILELIST_HEADER]
        for name, (frames, split) in videos.items():
            listed = (filelist_names or {}).get(name, name)
            lines.append(f"{listed},55.0,30.0,66.0,32,32,50,{frames},{split}")
            pixels = rng.integers(0, 255, (frames, 32, 32, 1), dtype=np.uint8).repeat(3, -1)
            write_video(root / "Videos" / f"{name}.avi", pixels)
        (root / "FileList.csv").write_text("\n".join(lines) + "\n")
        rows = [(f"{n}.avi", *r, f) for n, f, rr in tracings for r in rr]
        pd.DataFrame(rows, columns=["FileName", "X1", "Y1", "X2", "Y2", "Frame"]).to_csv(
            root / "VolumeTracings.csv", index=False)
        return root

    return make


@pytest.fixture(scope="session")
def training_store(tmp_path_factory: pytest.TempPathFactory):
    """Frame store of a 24-video synthetic folder (18 train, 3 val, 3 test) for training tests."""
    from lvseg.framestore import load_store

    base = tmp_path_factory.mktemp("training")
    root = write_synthetic(base / "echonet", videos=24, seed=11)
    return load_store(root, base / "cache", progress=False)


@pytest.fixture(scope="session")
def small_store(tmp_path_factory: pytest.TempPathFactory):
    """Frame store of a 4-video synthetic folder (2 train, 1 val, 1 test): one cheap epoch."""
    from lvseg.framestore import load_store

    base = tmp_path_factory.mktemp("small")
    root = write_synthetic(base / "echonet", videos=4, seed=5)
    return load_store(root, base / "cache", progress=False)
