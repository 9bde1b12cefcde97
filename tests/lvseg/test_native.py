"""lvseg.native: the kernels are built once per source, compiler and CPU, concurrently without
harm, and where they cannot be built the process says so once and trains on PyTorch's kernels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lvseg import native

from .conftest import native_or_skip

# a linear probe's step on the fallback's kernels: forward, the grid loss, backward
PROBE_STEP = """
import logging, sys, torch
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
from lvseg import native
from lvseg.losses import build_grid_loss
from lvseg.models.heads import build_probe
torch.manual_seed(0)
probe = build_probe("linear", channels=32, out=1, mask_size=(112, 112))
rows = torch.randn(4, 32, 16, 16).half().contiguous(memory_format=torch.channels_last)
masks = torch.ones(4, 112, 112, dtype=torch.bool)
loss = build_grid_loss("bce", reduction="mean", gamma=2.0)(probe.patch_logits(rows), masks)
loss.backward()
trained = probe.head.weight.grad.abs().sum() > 0
print("library", native.library() is not None, "loss", round(loss.item(), 3), "grad", trained)
"""


def _run(code: str, cache: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "LVSEG_NATIVE_DIR": str(cache), **env})


def test_a_build_is_kept_and_found_again(tmp_path: Path) -> None:
    native_or_skip()
    built = native.built(tmp_path)
    assert built.parent == tmp_path and built.stat().st_size > 0
    stamp = built.stat().st_mtime_ns
    assert native.built(tmp_path) == built and built.stat().st_mtime_ns == stamp  # not built again
    assert [p.name for p in tmp_path.iterdir()] == [built.name]  # no temporary file left behind


def test_two_processes_building_at_once_both_load_the_one_build(tmp_path: Path) -> None:
    native_or_skip()
    code = "from lvseg import native; print(native.library()._name)"
    env = {**os.environ, "LVSEG_NATIVE_DIR": str(tmp_path)}
    runs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
            for _ in range(2)]
    names = {run.communicate(timeout=120)[0].strip() for run in runs}
    assert all(run.returncode == 0 for run in runs)
    assert len(names) == 1 and Path(names.pop()).parent == tmp_path
    assert len(list(tmp_path.iterdir())) == 1


def test_a_truncated_build_is_said_and_built_again(tmp_path: Path) -> None:
    """A build cut short on disk (truncated for real) would not load: one warning names it, it is
    built again, and the kernels run."""
    native_or_skip()
    build = native.built(tmp_path)
    size = build.stat().st_size
    with open(build, "r+b") as file:
        file.truncate(100)
    done = _run(PROBE_STEP, tmp_path)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "would not load" in line]
    assert len(warnings) == 1 and build.name in warnings[0] and "building it again" in warnings[0], done.stderr
    assert done.stdout.split()[:2] == ["library", "True"] and build.stat().st_size == size


def test_without_a_compiler_one_warning_and_the_probe_trains_on_pytorchs_kernels(tmp_path: Path) -> None:
    """A real failure: the compiler named does not exist."""
    done = _run(PROBE_STEP, tmp_path, CC=str(tmp_path / "no-such-cc"))
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "native CPU kernels unavailable" in line]
    assert len(warnings) == 1 and "no-such-cc" in warnings[0], done.stderr
    assert done.stdout.split()[:2] == ["library", "False"] and done.stdout.split()[-1] == "tensor(True)"


def test_a_compile_error_is_reported_with_the_compilers_first_line(tmp_path: Path) -> None:
    """`false` runs and fails: the build error names the command and its exit status."""
    done = _run(PROBE_STEP, tmp_path, CC="false")
    assert done.returncode == 0, done.stderr
    assert "native CPU kernels unavailable" in done.stderr and "exited with 1" in done.stderr, done.stderr
    assert not list(tmp_path.glob("*.so"))  # nothing half-built kept


def test_the_switch_turns_them_off_without_a_warning(tmp_path: Path) -> None:
    done = _run(PROBE_STEP, tmp_path, LVSEG_NATIVE="0")
    assert done.returncode == 0, done.stderr
    assert "native CPU kernels off (LVSEG_NATIVE=0)" in done.stderr and "WARNING" not in done.stderr
    assert done.stdout.split()[:2] == ["library", "False"]


def test_both_kernels_give_a_probe_step_the_same_loss(tmp_path: Path) -> None:
    native_or_skip()
    on, off = (_run(PROBE_STEP, tmp_path, **switch) for switch in ({}, {"LVSEG_NATIVE": "0"}))
    assert on.returncode == off.returncode == 0, on.stderr + off.stderr
    assert on.stdout.split()[:2] == ["library", "True"] and off.stdout.split()[:2] == ["library", "False"]
    assert on.stdout.split()[2:] == off.stdout.split()[2:]  # the loss to 3 decimals; both trained the head


def test_builds_are_the_machines_not_a_data_caches(monkeypatch, tmp_path: Path) -> None:
    """A search on a fresh $LVSEG_CACHE_DIR (a benchmark's temporary one) must not compile again."""
    monkeypatch.delenv("LVSEG_NATIVE_DIR", raising=False)
    monkeypatch.setenv("LVSEG_CACHE_DIR", str(tmp_path))
    assert native.builds_folder() == Path.home() / ".cache" / "lvseg" / "native"
    monkeypatch.setenv("LVSEG_NATIVE_DIR", str(tmp_path / "builds"))
    assert native.builds_folder() == tmp_path / "builds"
