"""Back large tensors with transparent huge pages (PyTorch's ``THP_MEM_ALLOC_ENABLE``).

Every allocation above glibc's mmap threshold is a fresh ``mmap`` that the kernel faults in
4 KiB at a time, and the decoder's class-folded relevance tensors are tens to hundreds of MiB,
allocated anew on every pass. PyTorch's CPU allocator can ``madvise`` its allocations of 2 MiB and
more as huge pages: 512 times fewer page faults, and freed memory still goes
back to the system. The kernel must allow it (``/sys/kernel/mm/transparent_hugepage/enabled``
is ``always`` or ``madvise``). ``THP_MEM_ALLOC_ENABLE=0`` in the environment opts out.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

VARIABLE = "THP_MEM_ALLOC_ENABLE"
_PROBE_BYTES = 64 * 2**20
_KERNEL_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def kernel_mode() -> str:
    """The kernel's THP mode (``always``, ``madvise``, ``never``), or ``unavailable``."""
    try:
        text = _KERNEL_SETTING.read_text()
    except OSError:
        return "unavailable"
    chosen = [word[1:-1] for word in text.split() if word.startswith("[")]
    return chosen[0] if chosen else "unavailable"


def huge_pages_active() -> bool:
    """Whether torch advises its large blocks as huge pages.

    torch aligns those blocks to the page size (others to 64 bytes): one 64 MiB tensor, above
    glibc's largest mmap threshold and never touched, shows which.
    """
    if kernel_mode() not in ("always", "madvise"):  # also off Linux, where os.sysconf may not exist
        return False
    probe = torch.empty(_PROBE_BYTES, dtype=torch.uint8)
    return probe.data_ptr() % os.sysconf("SC_PAGE_SIZE") == 0


def use_huge_pages() -> bool:
    """Turn on torch's huge-page allocation unless the user set ``THP_MEM_ALLOC_ENABLE``; whether it is in force.

    torch reads the variable once, at its first allocation, so this must run before any tensor
    is made; the CLI and ``twdeploy.load`` / ``twdeploy.train`` call it first.
    """
    os.environ.setdefault(VARIABLE, "1")
    return huge_pages_active()


def describe() -> str:
    """One line for benchmark headers: the page size large tensors get, and why."""
    setting = f"{VARIABLE}={os.environ.get(VARIABLE, 'unset')}, kernel THP {kernel_mode()}"
    return f"huge pages ({setting})" if huge_pages_active() else f"4 KiB pages ({setting})"
