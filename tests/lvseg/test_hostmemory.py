from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Runs in a process of its own: the allocator's settings are the process's, for good. Three
# mask-sized tensors (64 masks of 112 px, 3.2 MB: 784 pages each) made and freed, 20 times a
# round; prints the page faults per time of the four rounds after the first.
BUFFER_PAGES = 784
ALLOCATIONS = textwrap.dedent("""
    import resource, sys
    import numpy as np, torch
    from torch import nn
    from lvseg.config import TrainConfig
    from lvseg.train import SplitData, Trainer

    # glibc's static defaults first: its adaptive ones fault or not depending on what ran before,
    # so that a Trainer that left them alone could pass by chance
    from lvseg.hostmemory import M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, _mallopt
    assert _mallopt(M_MMAP_THRESHOLD, 128 << 10) and _mallopt(M_TRIM_THRESHOLD, 128 << 10)
    if sys.argv[1] == "trainer":
        split = SplitData(lambda index: torch.zeros(len(index), 1, 4, 4), np.zeros((2, 4, 4), bool), np.zeros(2),
                          np.zeros(1))
        Trainer(nn.Conv2d(1, 1, 1), TrainConfig(recipe="test", device="cpu"), split, split, sys.argv[2])

    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    x = torch.rand(64, 112, 112)
    for round in range(5):
        before = faults()
        for _ in range(20):
            a = x + 1; b = a - 1; c = b * 2
            del a, b, c
        if round:
            print((faults() - before) / 20)
""")


def _faults_per_time(mode: str, tmp_path) -> list[float]:
    done = subprocess.run([sys.executable, "-c", ALLOCATIONS, mode, str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return [float(line) for line in done.stdout.split()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")
def test_a_cpu_trainer_keeps_freed_pages_for_the_next_step(tmp_path) -> None:
    """After a CPU Trainer is made, tensors freed and made again reuse their pages: no faults
    (a buffer is 784 pages). Without it, from the same glibc settings, the loop faults on every
    page: the count can see it, whatever glibc's adaptive threshold would have done."""
    kept = _faults_per_time("trainer", tmp_path)
    # one round of four may fault one buffer's pages once (39.2 a time, once in a CI run): the heap
    # grown past a freed block that something else took meanwhile, not pages handed back
    assert sorted(kept)[-2] < 10 and max(kept) < BUFFER_PAGES / 20 + 10, kept
    assert min(_faults_per_time("glibc defaults", tmp_path)) > 2000
