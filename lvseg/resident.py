"""A split's rows of a cached array (fp16 features or SAM embeddings, uint8 frames), served as
batches on the trial's device.

Within the budget, the rows are copied onto the device once and kept for the life of the process,
so a worker that Ray reuses for the next trial reads no cache at all; each batch is then one
gather by index on the device. Above the budget, batches are read from the memmap as they come,
into pinned memory when the device is a GPU, so their copies can overlap compute (the Trainer reads
them one batch ahead in a background thread).

The budget is ``resident_gb`` in the recipe's config; unset, it is half of the device's free memory
(a GPU), or a quarter of the machine's available memory (the CPU, where "the device" is RAM), and
at most that share of the process's part of the device (:func:`set_device_parts`): four trials packed
on one card (``gpu: 0.25``) start together, each sees the card's memory free, and each would
otherwise keep up to half of it.
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
AHEAD = 2                # batches prefetched() makes ahead of the one in use
SLOTS = AHEAD + 2        # batches alive at once: the one in use, AHEAD queued, the one being made
CHUNK_BYTES = 64 << 20   # rows are made resident this many bytes at a time
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
PARTS: dict[str, float] = {}  # by device type: the part of the device this process may count as its own


def set_device_parts(cuda: float = 1.0, cpu: float = 1.0) -> None:
    """The part of each device's memory this process's trial was given by whoever packs trials
    (Ray: ``gpu: 0.25`` is a quarter of a card; a trial of 1 CPU on an 8-CPU node, an eighth of
    its memory). A process that has its devices to itself never calls this."""
    for kind, part in (("cuda", cuda), ("cpu", cpu)):
        if not 0 < part <= 1:
            raise ValueError(f"a device part must be in (0, 1], got {kind} {part}")
    PARTS.update(cuda=cuda, cpu=cpu)


def default_budget(device: torch.device) -> int:
    """Bytes this process may keep on ``device`` when the config does not say: a share of what is
    free there, counting what it keeps already as free (it is ours to give back), and on a GPU
    what PyTorch's allocator holds unused (rows evicted for a previous trial stay reserved there,
    where the driver's free count does not see them); never more than that share of this
    process's part of the device (:data:`PARTS`)."""
    part = PARTS.get(device.type, 1.0)
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(min(free + cached + KEPT.nbytes(device), total * part) * GPU_SHARE)
    page = os.sysconf("SC_PAGE_SIZE")
    available, total = os.sysconf("SC_AVPHYS_PAGES") * page, os.sysconf("SC_PHYS_PAGES") * page
    return int(min(available + KEPT.nbytes(device), total * part) * CPU_SHARE)


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
        at = on_device(index, self.values.device)
        if self.values.is_contiguous() or self.values.ndim != 4:
            return self.values.index_select(0, at)
        # channels-last: index_select over the NHWC view keeps the layout. Indexing keeps it too,
        # but took 30 ms for a batch of 64 base-sized frames against 3 ms, on 2 CPU cores.
        return self.values.permute(0, 2, 3, 1).index_select(0, at).permute(0, 3, 1, 2)

    def cast_into(self, index: np.ndarray, out: torch.Tensor) -> torch.Tensor:
        """The batch written into ``out``, cast to its dtype, row by row: one pass over the rows,
        where gathering them, then casting the batch, writes and reads a copy in between (a
        batch of 64 base-sized frames into float32 on 2 CPU cores: 5.3 ms against 7.3 ms with
        both into reused tensors, 11.6 ms with the gather into a new one)."""
        for slot, row in enumerate(np.asarray(index).tolist()):
            out[slot].copy_(self.values[row])
        return out


class BatchSlots:
    """Batches in ``dtype`` (cast if need be), channels-last, written into ``count`` tensors reused
    in turn on a CPU. There a new batch-sized tensor costs more than the cast itself: glibc maps
    each allocation over 32 MB afresh, and every first write to a page faults (a batch of 64
    base-sized frames, 50 MB in float32: 30 ms into a new tensor, 5 ms into a reused one, on 2
    cores). A batch stays valid while ``count - 1`` more are made: ``SLOTS`` covers the consumer's
    batch and what :func:`prefetched` queues; one thread at a time makes them. A consumer that
    makes each batch as it needs it, and is done with it when it asks for the next (the Trainer's
    epochs, predictions and BatchNorm refresh), needs one: the same tensor, still in the CPU's
    cache, at every step. On a GPU the caching allocator already reuses memory: a plain cast."""

    def __init__(self, count: int = SLOTS, dtype: torch.dtype = torch.float32) -> None:
        self.slots: list[torch.Tensor | None] = [None] * count
        self.turn, self.dtype = 0, dtype

    def __call__(self, source: Streamed | Resident, index: np.ndarray) -> torch.Tensor:
        """``source(index)`` in ``dtype``, channels-last."""
        if isinstance(source, Resident) and source.values.device.type == "cpu":
            return source.cast_into(index, self._slot(len(index), source.values.shape[1:]))
        batch = source(index)
        if batch.device.type != "cpu":
            return batch.to(self.dtype, memory_format=torch.channels_last)
        return self._slot(len(batch), batch.shape[1:]).copy_(batch)

    def _slot(self, rows: int, shape: torch.Size) -> torch.Tensor:
        turn, self.turn = self.turn % len(self.slots), self.turn + 1
        slot = self.slots[turn]
        if slot is None or len(slot) < rows or slot.shape[1:] != shape:
            slot = self.slots[turn] = torch.empty((rows, *shape), dtype=self.dtype, memory_format=torch.channels_last)
        return slot[:rows]  # a slice of the batch dimension stays channels-last


def prefetched(inputs: Callable[[np.ndarray], Any], batches: Iterable[np.ndarray],
               ahead: int = AHEAD) -> Iterator[tuple[np.ndarray, Any]]:
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
    """Sample indices as a tensor on ``device``, copied without waiting for the device: to a GPU
    from pinned memory (PyTorch's pinned-block cache, which keeps a block until its copy is
    done), since CUDA may wait for the stream to stage a copy from pageable memory."""
    indices = torch.from_numpy(np.ascontiguousarray(index))
    if device.type == "cuda":
        indices = indices.pin_memory()
    return indices.to(device, non_blocking=True)


def rows_of(array: np.ndarray, rows: np.ndarray, device: torch.device, budget_gb: float | None,
            channels_last: bool = False) -> Callable[[np.ndarray], torch.Tensor]:
    """``batch(index)`` -> ``array[rows[index]]`` as a tensor in the array's dtype: resident on
    ``device`` when the rows fit the budget (kept across calls for a memmapped ``array``; in
    channels-last memory if asked, for a 4-d array), else streamed from ``array``."""
    rows = np.asarray(rows)
    needed = rows.size * (array.nbytes // max(len(array), 1))
    budget = default_budget(device) if budget_gb is None else int(budget_gb * 1e9)
    if needed > budget:
        log.info("streaming %.2f GB of %s from disk: over the %.2f GB budget on %s", needed / 1e9, _name(array),
                 budget / 1e9, device)
        return Streamed(array, rows, device)
    key = _key(array, rows, device, channels_last)
    if key is not None and key in KEPT.tensors:
        KEPT.tensors.move_to_end(key)
        return Resident(KEPT.tensors[key])
    _evict(device, budget - needed)
    values = _copied(array, rows, device, channels_last)
    if key is not None:
        KEPT.tensors[key] = values
    return Resident(values)


def _copied(array: np.ndarray, rows: np.ndarray, device: torch.device, channels_last: bool) -> torch.Tensor:
    """``array[rows]`` on ``device``, copied a chunk of rows at a time: the host holds one chunk
    beside the result, not a second copy of the split."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    values = torch.empty((len(rows), *array.shape[1:]), dtype=torch_dtype(array.dtype), device=device,
                         memory_format=layout)
    step = max(1, CHUNK_BYTES // max(array[:1].nbytes, 1))
    for start in range(0, len(rows), step):
        values[start:start + step].copy_(torch.from_numpy(np.ascontiguousarray(array[rows[start:start + step]])))
    return values


def torch_dtype(dtype: np.dtype) -> torch.dtype:
    """The torch dtype of a numpy dtype (of a cache's values)."""
    return torch.from_numpy(np.empty(0, dtype)).dtype


def _evict(device: torch.device, keep_at_most: int) -> None:
    """Drop the oldest kept rows on ``device`` until at most ``keep_at_most`` bytes remain."""
    for key in [k for k in KEPT.tensors if k[2] == str(device)]:
        if KEPT.nbytes(device) <= keep_at_most:
            return
        del KEPT.tensors[key]


def _key(array: np.ndarray, rows: np.ndarray, device: torch.device,
         channels_last: bool) -> tuple[str, str, str] | None:
    """Only a memmapped array has an identity that outlives the call: its file (cache folders
    are immutable once built; a rebuilt one gets a new inode, hence the stat)."""
    filename = getattr(array, "filename", None)
    if filename is None:
        return None
    stat = os.stat(filename)
    source = (f"{filename}:{stat.st_ino}:{stat.st_mtime_ns}:{array.offset}:{array.shape}:{array.dtype}"
              f"{':channels_last' if channels_last else ''}")
    return source, hashlib.sha1(rows.tobytes()).hexdigest(), str(device)


def _name(array: np.ndarray) -> str:
    return str(getattr(array, "filename", None) or f"an array of shape {array.shape}")
