"""The linear probe's CPU kernels (lvseg/native.c), compiled on first use and loaded with ctypes.

On a 2-core CPU a probe step of 64 base-sized frames spent most of its time in PyTorch passes that
each read or write the whole batch: gathering the fp16 rows, casting them, multiplying, then again
for the weight gradient; upsampling and the loss over 64 masks of 112 px in ten more passes. Here
each is one pass (BENCHMARKS.md, "Native CPU kernels").

The library is built with the machine's C compiler (``$CC``, else ``cc``) for the machine's own
CPU (``-march=native``) and kept in ``$LVSEG_NATIVE_DIR`` (default ``~/.cache/lvseg/native``: the
machine's, not a data cache's, so that a search on a fresh ``$LVSEG_CACHE_DIR`` does not compile
again) under a key of the source, the compiler and the CPU, so a home folder shared by a cluster's
nodes holds one build per kind of CPU. Built
once per key: concurrent workers write their own temporary file and rename it into place.
Where it cannot be built (no compiler, no F16C, not x86-64) :func:`library` is None after one
warning, and with ``LVSEG_NATIVE=0`` after one info line; the callers then use PyTorch's kernels:
the same results up to rounding, slower. The kernels run on torch's own OpenMP runtime (libgomp, found by name), with
torch's thread count.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shlex
import subprocess
import tempfile
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("native.c")
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC")
LIBRARIES = ("-lmvec", "-lm")  # glibc's vector exp
SWITCH = "LVSEG_NATIVE"        # "0" turns the kernels off
FOLDER = "LVSEG_NATIVE_DIR"    # where builds are kept
LANES = 16                     # floats in a kernel's vector: the head takes channels in multiples of it
MAX_GRID, MAX_SIZE = 64, 1024  # the largest patch grid and mask side the upsampling kernels take
log = logging.getLogger(__name__)

_p, _i64, _int, _f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
SIGNATURES = {
    "head_forward": ([_p, _p, _i64, _i64, _i64, _p, _p, _i64, _p, _int], None),
    "head_weight_grad": ([_p, _p, _i64, _i64, _i64, _p, _i64, _p, _p, _int], None),
    "upsample_forward": ([_p, _i64, _i64, _i64, _i64, _i64, _p, _p, _p, _p, _int], None),
    "upsample_backward": ([_p, _i64, _i64, _i64, _i64, _i64, _p, _p, _p, _p, _int], None),
    "bce_sum": ([_p, _p, _i64, _int], ctypes.c_double),
    "bce_grad": ([_p, _p, _i64, _f32, _p, _int], None),
    "bilinear_bce": ([_p, _p, _i64, _i64, _i64, _i64, _i64, _p, _p, _p, _p, _f32, _p, _int], ctypes.c_double),
}


class BuildError(RuntimeError):
    pass


@functools.cache  # one build (or one warning) per process
def library() -> ctypes.CDLL | None:
    """The kernels, or None (after one warning saying why) where they cannot be built here."""
    if os.environ.get(SWITCH) == "0":
        log.info("native CPU kernels off (%s=0): using PyTorch's", SWITCH)
        return None
    try:
        lib = _loaded()
    except (BuildError, OSError) as error:
        log.warning("native CPU kernels unavailable, using PyTorch's (slower): %s", error)
        return None
    for name, (arguments, result) in SIGNATURES.items():
        function = getattr(lib, name)
        function.argtypes, function.restype = arguments, result
    return lib


def _loaded() -> ctypes.CDLL:
    """The build for this machine, loaded; one that will not load (truncated, overwritten) is
    reported and built again, once."""
    path = built()
    try:
        return ctypes.CDLL(str(path))
    except OSError as error:
        log.warning("native CPU kernels: %s would not load (%s): building it again", path, error)
        path.unlink(missing_ok=True)
        return ctypes.CDLL(str(built()))


def compiler() -> list[str]:
    return shlex.split(os.environ.get("CC") or "cc")


def built(folder: Path | None = None) -> Path:
    """The shared library for this source, compiler and CPU, compiled if not there yet."""
    if platform.machine() not in ("x86_64", "AMD64"):
        raise BuildError(f"the kernels are written for x86-64, this is {platform.machine()}")
    folder = folder or builds_folder()
    target = folder / f"lvseg-native-{_key()}.so"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".so", delete=False) as scratch:
        partial = Path(scratch.name)
    try:
        _compile(partial)
        os.replace(partial, target)  # atomic: a concurrent build renames the same bytes
    finally:
        partial.unlink(missing_ok=True)
    return target


def builds_folder() -> Path:
    """``$LVSEG_NATIVE_DIR`` if set, else ``~/.cache/lvseg/native``: the one place this default lives."""
    return Path(os.environ.get(FOLDER) or Path.home() / ".cache" / "lvseg" / "native")


def _compile(out: Path) -> None:
    command = [*compiler(), *FLAGS, str(SOURCE), "-o", str(out), *LIBRARIES]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BuildError(f"{shlex.join(command[:1])} failed to run: {error}") from None
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise BuildError(f"{shlex.join(command)} exited with {done.returncode}: {first}")


def _key() -> str:
    """Source, compiler command and version, and the CPU's model and flags: what the build depends on."""
    digest = hashlib.sha256(SOURCE.read_bytes())
    digest.update(shlex.join([*compiler(), *FLAGS, *LIBRARIES]).encode())
    digest.update(_compiler_version().encode())
    digest.update(_cpu().encode())
    return digest.hexdigest()[:16]


def _compiler_version() -> str:
    try:
        return subprocess.run([*compiler(), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BuildError(f"no C compiler: {shlex.join(compiler())} ({error})") from None


def _cpu() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return "\n".join(sorted({line for line in lines if line.startswith(("model name", "flags"))}))


def pointer(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


def threads() -> int:
    return torch.get_num_threads()
