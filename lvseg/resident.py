"""A split's rows of a cached array (fp16 features or SAM embeddings, uint8 frames), served as
batches on the trial's device.

Within the budget, the rows are copied onto the device once and kept for the life of the process,
so a worker that Ray reuses for the next trial reads no cache at all; each batch is then one
gather by index on the device. Above the budget, batches are read from the memmap as they come,
into pinned memory when the device is a GPU, so their copies can overlap compute (the Trainer reads
them one batch ahead in a background thread).

The budget is ``resident_gb`` in the recipe's config; unset, it is half of the device's free memory
(a GPU), or a quarter of the machine's available memory (the CPU, where "the device" is RAM).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from queue import Full, Queue
from typing import Any

import numpy as np
import torch

GPU_SHARE, CPU_SHARE = 0.5, 0.25
log = logging.getLogger(__name__)


class Kept:
    """What this process keeps on its devices, oldest first: rows by (file, rows, device)."""

    def __init__(self) -> None:
        self.tensors: OrderedDict[tuple[str, str, str], torch.Tensor] = OrderedDict()

    def nbytes(self, device: torch.device) -> int:
        return sum(t.nbytes for (_, _, where), t in self.tensors.items() if where == str(device))

    def clear(self) -> None:
        self.tensors.clear()


KEPT = Kept()


def default_budget(device: torch.device) -> int:
    """Bytes this process may keep on ``device`` when the config does not say: a share of what is
    free there, counting what it keeps already as free (it is ours to give back)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int((free + KEPT.nbytes(device)) * GPU_SHARE)
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int((available + KEPT.nbytes(device)) * CPU_SHARE)


class Streamed:
    """``rows`` of ``array`` read from it batch by batch, then copied to ``device`` (from pinned
    memory, asynchronously, for a GPU)."""

    streamed = True

    def __init__(self, array: np.ndarray, rows: np.ndarray, device: torch.device) -> None:
        self.array, self.rows, self.device = array, rows, device

    def __call__(self, index: np.ndarray) -> torch.Tensor:
        batch = torch.from_numpy(np.ascontiguousarray(self.array[self.rows[index]]))
        if self.device.type != "cuda":
            return batch
        return batch.pin_memory().to(self.device, non_blocking=True)


class Resident:
    """``rows`` of ``array`` on ``device``; a batch is a gather by index there."""

    streamed = False

    def __init__(self, values: torch.Tensor) -> None:
        self.values = values

    def __call__(self, index: np.ndarray) -> torch.Tensor:
        return self.values.index_select(0, on_device(index, self.values.device))


def prefetched(inputs: Callable[[np.ndarray], Any], batches: Iterable[np.ndarray],
               ahead: int = 2) -> Iterator[tuple[np.ndarray, Any]]:
    """(index, inputs(index)) per batch, computed up to ``ahead`` batches early in a thread; an
    exception there is raised here, at the batch it belongs to. A consumer that stops early
    (an exception in the step) stops the thread too."""
    queue: Queue = Queue(maxsize=ahead)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def work() -> None:
        try:
            for index in batches:
                if not put((index, inputs(index), None)):
                    return
        except BaseException as error:  # handed to the consumer, which raises it
            put((None, None, error))
        put(None)

    thread = threading.Thread(target=work, daemon=True, name="lvseg-prefetch")
    thread.start()
    try:
        while (item := queue.get()) is not None:
            index, x, error = item
            if error is not None:
                raise error
            yield index, x
    finally:
        stop.set()
        thread.join()


def on_device(index: np.ndarray, device: torch.device) -> torch.Tensor:
    """Sample indices as a tensor on ``device``, copied without waiting for the device."""
    return torch.from_numpy(np.ascontiguousarray(index)).to(device, non_blocking=True)


def rows_of(array: np.ndarray, rows: np.ndarray, device: torch.device,
            budget_gb: float | None) -> Callable[[np.ndarray], torch.Tensor]:
    """``batch(index)`` -> ``array[rows[index]]`` as a tensor in the array's dtype: resident on
    ``device`` when the rows fit the budget (kept across calls for a memmapped ``array``), else
    streamed from ``array``."""
    rows = np.asarray(rows)
    needed = rows.size * (array.nbytes // max(len(array), 1))
    budget = default_budget(device) if budget_gb is None else int(budget_gb * 1e9)
    if needed > budget:
        log.info("streaming %.2f GB of %s from disk: over the %.2f GB budget on %s", needed / 1e9, _name(array),
                 budget / 1e9, device)
        return Streamed(array, rows, device)
    key = _key(array, rows, device)
    if key is not None and key in KEPT.tensors:
        KEPT.tensors.move_to_end(key)
        return Resident(KEPT.tensors[key])
    _evict(device, budget - needed)
    values = torch.from_numpy(np.ascontiguousarray(array[rows])).to(device)
    if key is not None:
        KEPT.tensors[key] = values
    return Resident(values)


def _evict(device: torch.device, keep_at_most: int) -> None:
    """Drop the oldest kept rows on ``device`` until at most ``keep_at_most`` bytes remain."""
    for key in [k for k in KEPT.tensors if k[2] == str(device)]:
        if KEPT.nbytes(device) <= keep_at_most:
            return
        del KEPT.tensors[key]


def _key(array: np.ndarray, rows: np.ndarray, device: torch.device) -> tuple[str, str, str] | None:
    """Only a memmapped array has an identity that outlives the call: its file (cache folders
    are immutable once built; a rebuilt one gets a new inode, hence the stat)."""
    filename = getattr(array, "filename", None)
    if filename is None:
        return None
    stat = os.stat(filename)
    source = f"{filename}:{stat.st_ino}:{stat.st_mtime_ns}:{array.offset}:{array.shape}:{array.dtype}"
    return source, hashlib.sha1(rows.tobytes()).hexdigest(), str(device)


def _name(array: np.ndarray) -> str:
    return str(getattr(array, "filename", None) or f"an array of shape {array.shape}")
