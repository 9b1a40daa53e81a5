"""How large CPU tensors get their memory: huge pages, and freed memory kept for the next tensors.

Every allocation above glibc's mmap threshold (at most 32 MiB) is a fresh ``mmap`` that the
kernel zeroes and faults in, and ``munmap``-ed again when freed; the decoder's class-folded
relevance tensors are tens to hundreds of MiB, allocated anew by every op of every pass.

- :func:`use_huge_pages`: PyTorch's CPU allocator ``madvise``-s its allocations of 2 MiB and more
  as transparent huge pages (``THP_MEM_ALLOC_ENABLE``): 512 times fewer page faults. The kernel
  must allow it (``/sys/kernel/mm/transparent_hugepage/enabled`` is ``always`` or ``madvise``).
  ``THP_MEM_ALLOC_ENABLE=0`` in the environment opts out.
- :func:`reuse_freed_memory`, opt-in (``TWDEPLOY_REUSE_MEMORY=1``): glibc serves large blocks
  from its heap instead of fresh mappings and never trims it (``mallopt``: ``M_MMAP_MAX`` 0,
  ``M_TRIM_THRESHOLD`` -1), so a tensor reuses pages an earlier one freed: no zeroing, no
  faults. Faster, but the heap fragments, so the peak is higher (docs/benchmarks.md). Not done
  where the user set glibc's own ``MALLOC_MMAP_MAX_`` / ``MALLOC_TRIM_THRESHOLD_`` (or their
  ``GLIBC_TUNABLES``).
- :func:`release_freed_memory`: with reuse on, hands the heap's free pages back at the end of
  every inference batch and training step (the torch backend and the trainer call it) once it
  keeps more than ``RELEASE_ABOVE``: memory is reused within a pass, and between passes the
  process holds what is live plus at most that much.
- :func:`free_page_reporting`: whether this is a virtual machine whose balloon device reports
  free memory to its host, which takes the pages back; memory freed a few seconds ago is then
  slow to fault in again (docs/benchmarks.md), the case where reusing freed memory pays most.

:func:`configure` does what the environment asks for; the CLI, ``twdeploy.load`` and
``twdeploy.train`` call it first.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform
from pathlib import Path

import torch

VARIABLE = "THP_MEM_ALLOC_ENABLE"
REUSE_VARIABLE = "TWDEPLOY_REUSE_MEMORY"
_GLIBC_VARIABLES = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")
_GLIBC_TUNABLES = ("glibc.malloc.mmap_max", "glibc.malloc.trim_threshold")
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters, <malloc.h>
_reusing = False
_PROBE_BYTES = 4 * 2**20
RELEASE_ABOVE = 256 * 2**20  # free heap bytes a process may keep between passes
_KERNEL_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")
VIRTIO_DEVICES = Path("/sys/bus/virtio/devices")
_VIRTIO_BALLOON, _BALLOON_F_REPORTING = 0x0005, 5  # device id and feature bit, virtio spec 5.5


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

    torch aligns those blocks to the page size (others to 64 bytes, which a block from glibc's
    heap may meet by chance): three live tensors of odd sizes, never touched, show which.
    """
    if kernel_mode() not in ("always", "madvise"):  # also off Linux, where os.sysconf may not exist
        return False
    probes = [torch.empty(_PROBE_BYTES + 64 * i, dtype=torch.uint8) for i in (1, 3, 5)]
    return all(p.data_ptr() % os.sysconf("SC_PAGE_SIZE") == 0 for p in probes)


def use_huge_pages() -> bool:
    """Turn on torch's huge-page allocation unless the user set ``THP_MEM_ALLOC_ENABLE``; whether it is in force.

    torch reads the variable once, at its first allocation, so this must run before any tensor
    is made; the CLI and ``twdeploy.load`` / ``twdeploy.train`` call it first.
    """
    os.environ.setdefault(VARIABLE, "1")
    return huge_pages_active()


def _user_set_glibc_malloc() -> bool:
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return any(name in os.environ for name in _GLIBC_VARIABLES) or any(t in tunables for t in _GLIBC_TUNABLES)


def reuse_freed_memory() -> bool:
    """Have glibc keep freed large blocks for later allocations (see the module docstring); whether it is in force.

    Only on glibc, and not when the user set glibc's malloc settings themselves.
    """
    global _reusing
    if _reusing:
        return True
    if _user_set_glibc_malloc() or platform.libc_ver()[0] != "glibc":
        return False
    libc = _libc()
    _reusing = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, -1))
    return _reusing


def release_freed_memory(above: int = RELEASE_ABOVE) -> bool:
    """Where freed memory is being reused and the heap keeps more than ``above`` bytes of it, hand it back.

    Call it between passes (``malloc_trim``): the next pass faults those pages in again, but the
    heap's blocks stay where they are, so its peak no longer grows from pass to pass. Below
    ``above`` the memory stays for the next pass: releasing a little every training step of a
    small model cost more time than it saved (docs/benchmarks.md). Whether it released.
    """
    if not _reusing:
        return False
    kept = free_heap_bytes()
    if kept is not None and kept <= above:
        return False
    _libc().malloc_trim(0)
    return True


_MALLINFO2_FIELDS = (  # struct mallinfo2, <malloc.h>
    "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"
)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2_FIELDS]


def free_heap_bytes() -> int | None:
    """Free bytes in glibc's heaps (``mallinfo2().fordblks``, glibc 2.33 and later; None where unavailable)."""
    try:
        mallinfo2 = _libc().mallinfo2
    except (AttributeError, OSError, TypeError):
        return None
    mallinfo2.restype = _MallInfo2
    return int(mallinfo2().fordblks)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"))


def free_page_reporting(devices: Path = VIRTIO_DEVICES) -> bool:
    """Whether a virtio balloon with free page reporting is bound to its driver (Linux guests only)."""
    try:
        entries = list(devices.iterdir())
    except OSError:
        return False
    for entry in entries:
        try:
            device = int((entry / "device").read_text(), 16)
            features = (entry / "features").read_text().strip()
        except (OSError, ValueError):
            continue
        reporting = len(features) > _BALLOON_F_REPORTING and features[_BALLOON_F_REPORTING] == "1"
        if device == _VIRTIO_BALLOON and reporting and (entry / "driver").exists():
            return True
    return False


def configure() -> None:
    """Huge pages unless the user opted out, reuse of freed memory if they opted in; call before any tensor is made."""
    use_huge_pages()
    if os.environ.get(REUSE_VARIABLE) == "1":
        reuse_freed_memory()


def describe() -> str:
    """One line for benchmark headers: the page size large tensors get, whether freed memory is reused, and why."""
    setting = f"{VARIABLE}={os.environ.get(VARIABLE, 'unset')}, kernel THP {kernel_mode()}"
    pages = f"huge pages ({setting})" if huge_pages_active() else f"4 KiB pages ({setting})"
    opted = f"{REUSE_VARIABLE}={os.environ.get(REUSE_VARIABLE, 'unset')}"
    reuse = "freed memory reused" if _reusing else f"freed memory returned ({opted})"
    host = ", VM balloon reports free memory to its host" if free_page_reporting() else ""
    return f"{pages}{host}, {reuse}"
