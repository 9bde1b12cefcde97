from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from lvseg import resident
from lvseg.recipes import get_recipe
from lvseg.resident import KEPT, Resident, Streamed, prefetched, rows_of

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def nothing_kept():
    KEPT.clear()
    yield
    KEPT.clear()


def _memmap(tmp_path: Path, rows: int = 12, name: str = "values.npy") -> np.ndarray:
    values = np.arange(rows * 6, dtype=np.float16).reshape(rows, 2, 3)
    np.save(tmp_path / name, values)
    return np.load(tmp_path / name, mmap_mode="r")


def test_resident_and_streamed_batches_are_the_same_rows(tmp_path: Path) -> None:
    array, rows, index = _memmap(tmp_path), np.array([7, 3, 5, 1]), np.array([2, 0, 3])
    kept, streamed = rows_of(array, rows, CPU, None), rows_of(array, rows, CPU, 0)
    assert isinstance(kept, Resident) and isinstance(streamed, Streamed)
    assert torch.equal(kept(index), torch.from_numpy(np.asarray(array[rows[index]])))
    assert torch.equal(kept(index), streamed(index))


def test_a_second_trial_in_the_same_worker_reads_no_cache(tmp_path: Path) -> None:
    rows = np.arange(6)
    first = rows_of(_memmap(tmp_path), rows, CPU, None)
    reopened = np.load(tmp_path / "values.npy", mmap_mode="r")  # the next trial opens the cache anew
    second = rows_of(reopened, rows, CPU, None)
    assert second.values is first.values and len(KEPT.tensors) == 1  # served from memory: nothing read


def test_a_rebuilt_cache_is_not_served_from_what_was_kept(tmp_path: Path) -> None:
    array, rows = _memmap(tmp_path), np.arange(4)
    first = rows_of(array, rows, CPU, None)
    (tmp_path / "values.npy").unlink()
    rebuilt = _memmap(tmp_path, rows=12)  # same path, a new file
    assert rows_of(rebuilt, rows, CPU, None).values is not first.values


def test_over_the_budget_the_oldest_kept_rows_make_way_then_batches_stream(tmp_path: Path) -> None:
    array = _memmap(tmp_path)  # 12 bytes a row
    budget_gb = 8 * 12 / 1e9  # room for eight rows
    rows_of(array, np.arange(6), CPU, budget_gb)
    rows_of(array, np.arange(6, 12), CPU, budget_gb)  # the first six make way
    assert [len(t) for t in KEPT.tensors.values()] == [6]
    assert isinstance(rows_of(array, np.arange(10), CPU, budget_gb), Streamed)


def test_the_default_budget_is_a_share_of_what_is_free() -> None:
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0.9 * available * resident.CPU_SHARE < resident.default_budget(CPU) <= 1.1 * available * resident.CPU_SHARE


def test_on_a_gpu_the_budget_counts_what_the_allocator_holds_unused(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GPU here: the CUDA memory queries answer as a card would after a trial's kept rows were
    evicted (their bytes stay reserved by PyTorch's allocator, out of the driver's free count)."""
    gb = 10**9
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (40 * gb, 141 * gb))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 30 * gb)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 12 * gb)
    assert resident.default_budget(torch.device("cuda", 0)) == int((40 + 18) * gb * resident.GPU_SHARE)


@pytest.fixture
def parts():
    """Device parts set by a test, unset after it (a process that packs no trials has none)."""
    yield resident.set_device_parts
    resident.PARTS.clear()


def test_trials_packed_on_one_card_keep_within_their_part_of_it(monkeypatch: pytest.MonkeyPatch, parts) -> None:
    """Four trials with `gpu: 0.25` start together and each sees the whole card free: each may keep
    half of its quarter, not half of the card (four halves would not fit)."""
    gb = 10**9
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (140 * gb, 141 * gb))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 0)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 0)
    card = torch.device("cuda", 0)
    assert resident.default_budget(card) == int(140 * gb * resident.GPU_SHARE)  # a card to itself
    parts(cuda=0.25, cpu=1.0)
    assert resident.default_budget(card) == int(141 * gb * 0.25 * resident.GPU_SHARE)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (20 * gb, 141 * gb))
    assert resident.default_budget(card) == int(20 * gb * resident.GPU_SHARE)  # less free than its part


def test_on_the_cpu_a_trial_keeps_within_its_part_of_the_node_s_memory(parts) -> None:
    page = os.sysconf("SC_PAGE_SIZE")
    total, available = os.sysconf("SC_PHYS_PAGES") * page, os.sysconf("SC_AVPHYS_PAGES") * page
    parts(cuda=1.0, cpu=0.01)
    assert resident.default_budget(CPU) == int(min(available, total * 0.01) * resident.CPU_SHARE)
    assert resident.default_budget(CPU) <= total * 0.01 * resident.CPU_SHARE


@pytest.mark.parametrize("cuda, cpu", [(0.0, 1.0), (1.0, 1.5), (-0.25, 1.0)])
def test_a_device_part_outside_0_1_is_refused(cuda: float, cpu: float) -> None:
    with pytest.raises(ValueError, match="a device part must be in"):
        resident.set_device_parts(cuda=cuda, cpu=cpu)
    assert not resident.PARTS


@pytest.mark.parametrize("name", ["dinov2_probe", "baseline", "sam_decoder"])
def test_resident_and_streamed_inputs_train_identically(name: str, fast_configs, small_store, tmp_path: Path) -> None:
    """Batches of one video (two frames), so that the train split has two: a resident probe batch
    shares its one slot with the next (lvseg.resident.BatchSlots), and a consumer still
    using a batch when it asks for the next would train on the wrong frames here."""
    recipe = get_recipe(name)
    histories = []
    for budget in (None, 0.0):
        KEPT.clear()
        config = recipe.config(**{**fast_configs[name], "batch_size": 1}, resident_gb=budget)
        result = recipe(config, small_store, workdir=tmp_path / str(budget))
        assert bool(KEPT.tensors) == (budget is None)  # kept on the device, or really streamed
        histories.append([{k: v for k, v in epoch.items() if k != "seconds"} for epoch in result.history])
    assert histories[0] == histories[1] and len(histories[0]) == 2


@pytest.mark.parametrize("head", ["linear", "bn_linear"])
def test_under_bf16_autocast_the_probe_trains_on_the_fp16_rows_as_on_their_float32_copy(
        head: str, fast_configs, small_store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU's path, run on the CPU under its autocast: the probe's batches are the cache's fp16
    rows, not a float32 copy, and training matches training on the copy: exactly for the linear
    head (fp16 and its exact float32 copy round to the same bf16), within bf16 rounding where
    BatchNorm normalises the rows first."""
    from lvseg import native, train
    from lvseg.recipes import probe

    monkeypatch.setattr(native, "library", lambda: None)  # a GPU's path: the CPU kernels never run there
    recipe = get_recipe("dinov2_probe")
    config = recipe.config(**fast_configs["dinov2_probe"], head=head)
    (cache,) = recipe.caches(config, small_store)
    features = cache.load(progress=False)  # built before autocast is patched: other tests share it
    monkeypatch.setattr(train, "computes_in_bf16", lambda device: True)
    histories = {}
    for as_fp16 in (True, False):
        monkeypatch.setattr(probe, "computes_in_bf16", lambda device, as_fp16=as_fp16: as_fp16)
        # the copy: float32 batches for every head (outside autocast the linear head takes fp16)
        monkeypatch.setattr(probe, "torch_dtype", lambda dtype: torch.float32)
        rows, index = np.arange(4), np.array([3, 0])
        batch = probe.feature_inputs(features, rows, config)(index)
        assert batch.dtype == (torch.float16 if as_fp16 else torch.float32)
        assert batch.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(batch.float(), torch.from_numpy(features.reshape(-1, *features.shape[2:])[index]).float())
        result = recipe(config, small_store, workdir=tmp_path / str(as_fp16))
        histories[as_fp16] = [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in result.history]
    assert len(histories[True]) == 2
    if head == "linear":
        assert histories[True] == histories[False]
    else:
        for fp16, fp32 in zip(histories[True], histories[False], strict=True):
            assert fp16.keys() == fp32.keys()
            assert all(fp16[k] == pytest.approx(fp32[k], rel=1e-2, abs=1e-2) for k in fp16)


def test_on_a_cpu_the_linear_probe_trains_on_the_fp16_rows_as_on_their_float32_copy(
        fast_configs, small_store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The linear head takes the cache's rows as they are (lvseg.nativeops where the native kernels
    build, else lvseg.models.halflinear); given a float32 copy of each batch instead, on PyTorch's
    kernels (the way before), it trains to the same metrics, up to the order of the sums."""
    from lvseg import native
    from lvseg.recipes import probe

    recipe = get_recipe("dinov2_probe")
    config = recipe.config(**fast_configs["dinov2_probe"], head="linear")
    histories = {}
    for copy in (False, True):
        if copy:
            monkeypatch.setattr(probe, "torch_dtype", lambda dtype: torch.float32)
            monkeypatch.setattr(native, "library", lambda: None)
        result = recipe(config, small_store, workdir=tmp_path / str(copy))
        histories[copy] = [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in result.history]
    assert len(histories[False]) == 2
    for fp16, fp32 in zip(histories[False], histories[True], strict=True):
        assert fp16.keys() == fp32.keys()
        assert all(fp16[k] == pytest.approx(fp32[k], rel=1e-6, abs=0) for k in fp16), (fp16, fp32)


@pytest.mark.parametrize("budget", [None, 0.0])
@pytest.mark.parametrize("head, dtype", [("linear", torch.float16), ("bn_linear", torch.float32)])
def test_resident_probe_batches_reuse_one_slot_and_streamed_ones_cycle_through_slots(
        budget, head: str, dtype: torch.dtype) -> None:
    """Resident rows are gathered as each batch is asked for, so one tensor serves every batch
    (still in the CPU's cache at the next step); streamed ones are made ahead in a thread and each
    must outlive what it makes meanwhile (the Trainer's agreement on both is
    test_resident_and_streamed_inputs_train_identically). The linear head takes the cache's fp16
    rows (lvseg.models.halflinear); BatchNorm heads, float32."""
    from lvseg.recipes.probe import ProbeConfig, feature_inputs

    features = np.arange(6 * 2 * 3 * 2 * 2, dtype=np.float16).reshape(6, 2, 3, 2, 2)  # (videos, phases, ...)
    inputs = feature_inputs(features, np.arange(12), ProbeConfig(device="cpu", head=head, resident_gb=budget))
    batches = [inputs(np.array([i, 11 - i])) for i in range(6)]
    assert [b.dtype for b in batches] == [dtype] * 6
    assert all(b.is_contiguous(memory_format=torch.channels_last) for b in batches)
    assert torch.equal(batches[-1], torch.from_numpy(features.reshape(12, 3, 2, 2)[[5, 6]]).to(dtype))
    assert len({b.data_ptr() for b in batches}) == (1 if budget is None else resident.SLOTS)


def test_prefetched_batches_come_in_order_and_errors_surface_at_their_batch() -> None:
    def inputs(index: np.ndarray) -> torch.Tensor:
        if index[0] == 3:
            raise ValueError("row 3 is unreadable")
        return torch.from_numpy(index)

    got = []
    with pytest.raises(ValueError, match="row 3 is unreadable"):
        for index, x in prefetched(inputs, [np.array([i]) for i in range(5)]):
            assert int(x[0]) == int(index[0])  # each batch with its own index
            got.append(int(x[0]))
    assert got == [0, 1, 2]


def test_a_consumer_that_stops_early_stops_the_prefetch_thread() -> None:
    import threading

    batches = prefetched(lambda index: torch.from_numpy(index), (np.array([i]) for i in range(1000)))
    next(batches)
    batches.close()
    assert not any(t.name == "lvseg-prefetch" for t in threading.enumerate())


def test_channels_last_rows_are_the_same_values_kept_apart_from_nchw_ones(tmp_path: Path) -> None:
    np.save(tmp_path / "maps.npy", np.arange(8 * 3 * 2 * 2, dtype=np.float16).reshape(8, 3, 2, 2))
    array, rows, index = np.load(tmp_path / "maps.npy", mmap_mode="r"), np.array([6, 1, 4]), np.array([2, 0])
    nchw, last = rows_of(array, rows, CPU, None), rows_of(array, rows, CPU, None, channels_last=True)
    assert last.values.is_contiguous(memory_format=torch.channels_last) and nchw.values.is_contiguous()
    batch = last(index)
    assert batch.is_contiguous(memory_format=torch.channels_last)  # the gather keeps the layout
    assert torch.equal(batch, torch.from_numpy(np.asarray(array[rows[index]]))) and torch.equal(batch, nchw(index))
    assert len(KEPT.tensors) == 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("kind", ["resident", "streamed"])
def test_batch_slots_are_reused_and_each_batch_outlives_what_prefetch_makes_meanwhile(kind: str,
                                                                                     dtype: torch.dtype) -> None:
    import time

    values = torch.arange(40 * 3 * 2 * 2, dtype=torch.float16).reshape(40, 3, 2, 2)
    source = (Resident(values.contiguous(memory_format=torch.channels_last)) if kind == "resident"
              else Streamed(values.numpy(), np.arange(40), CPU))
    cast = resident.BatchSlots(dtype=dtype)

    def inputs(index: np.ndarray) -> torch.Tensor:
        return cast(source, index)

    pointers = []
    order = np.random.default_rng(0).permutation(40)
    for index, x in prefetched(inputs, [order[i:i + 4] for i in range(0, 40, 4)]):
        time.sleep(0.02)  # a slow consumer: the thread fills its queue meanwhile
        assert x.dtype == dtype and x.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(x, values[torch.from_numpy(index)].to(dtype)), f"batch {index} was overwritten"
        pointers.append(x.data_ptr())
    assert len(set(pointers)) == resident.SLOTS  # ten batches, SLOTS tensors
    assert cast(source, np.arange(3)).data_ptr() == pointers[len(pointers) % resident.SLOTS]  # a short batch: a slice
