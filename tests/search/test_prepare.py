"""What is checked before a search starts, against the real thing: here, a cache folder on a disk
too small for the caches the space needs (a 4 MB tmpfs)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from search import tracking
from search.cli import main
from search.prepare import size_text

SPACE = {"recipe": "dinov2_probe",
         "fixed": {"backbone": "tiny", "image_size": 448, "layers": 4, "epochs": 1},  # features: 8.4 MB
         "params": {"lr": {"type": "loguniform", "low": 1e-3, "high": 1e-2}},
         "search": {"sampler": "random", "scheduler": "fifo", "samples": 1, "concurrency": 1}}


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MB filesystem: the frame store (1.6 MB) fits, the features do not."""
    if os.geteuid() != 0:
        pytest.skip("DISK-SPACE TEST SKIPPED: mounting a small tmpfs needs root (CI runs as root)")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_caches_that_do_not_fit_are_refused_before_anything_starts(small_disk: Path, synthetic_root: Path,
                                                                   tmp_path: Path, capsys) -> None:
    space = tmp_path / "big.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    code = main(["run", str(space), "--data", str(synthetic_root), "--name", "big", "--tracking-uri", uri,
                 "--storage", str(tmp_path / "runs"), "--cache-dir", str(small_disk)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "the caches this search needs take 8.4 MB but" in err and str(small_disk) in err
    assert "MB free (DINOv2 features" in err and "pass --cache-dir elsewhere" in err
    assert not (tmp_path / "runs" / "big").exists()  # nothing left behind: the same command can run again
    with pytest.raises(LookupError):
        tracking.find_search_run(tracking.client(uri), uri, "big")
    assert not [p.name for p in small_disk.iterdir() if not p.name.startswith("framestore-")]  # no partial cache


@pytest.mark.parametrize(("nbytes", "text"), [(8_388_608, "8.4 MB"), (250_000_000_000, "250.0 GB")])
def test_sizes_read_in_mb_or_gb(nbytes: int, text: str) -> None:
    assert size_text(nbytes) == text
