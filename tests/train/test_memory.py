"""retained_heap keeps large freed tensors in the process (no page faults per epoch)."""
import resource
import sys

import pytest
import torch

from neuron_hybrid.train.memory import _glibc, retained_heap


def _faults_per_alloc(n=10, mb=80):
    """Minor page faults of each of n allocate-touch-free cycles of an mb-MB tensor."""
    out = []
    for _ in range(n):
        r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = torch.empty(mb * 2**20 // 8, dtype=torch.float64)
        t.fill_(1.0)  # touch every page
        del t
        out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux") or _glibc() is None, reason="glibc only")
def test_large_tensors_reuse_memory_inside_the_block():
    pages = 80 * 2**20 // resource.getpagesize()
    outside = _faults_per_alloc()
    with retained_heap():
        with retained_heap():  # an inner block (a training function called inside another) ...
            pass
        inside = _faults_per_alloc()  # ... leaves the outer one in force
    # glibc maps each 80 MB block anew and the kernel zero-fills it page by page ...
    assert all(f > 0.9 * pages for f in outside[-3:]), outside
    # ... inside the block the freed memory is reused once the heap has grown
    assert sum(inside[-3:]) < 0.1 * pages, inside


def test_retained_heap_is_a_decorator_and_passes_results_through():
    @retained_heap()
    def f(x):
        return x + 1

    assert f(1) == 2 and f(2) == 3
