"""use_huge_pages: large tensors in 2 MiB pages; reuse_freed_memory (opt-in): freed ones come back without faults,
and release_freed_memory hands them back between passes."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from twdeploy.runtime import allocator

needs_thp = pytest.mark.skipif(
    allocator.kernel_mode() not in ("always", "madvise"), reason="the kernel does not offer transparent huge pages"
)
needs_glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

# A child process: torch reads THP_MEM_ALLOC_ENABLE once. Faults per fresh 64 MiB tensor.
CHILD = """
import json, resource, sys, torch
from twdeploy.runtime import allocator
active = allocator.use_huge_pages() if sys.argv[1] == "use" else allocator.huge_pages_active()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.ones(16, 1024, 1024).sum()
before = faults()
for _ in range(4):
    torch.ones(16, 1024, 1024).sum()
print(json.dumps({"active": active, "faults": (faults() - before) / 4, "pages": allocator.describe()}))
"""
SMALL_PAGES = 64 * 2**20 // os.sysconf("SC_PAGE_SIZE")


# Faults of each of sixteen 64 MiB tensors, each made after the one before was freed (run with THP
# off: 4 KiB pages). With reuse, glibc's heap grows for the first few (small blocks that land
# beside a freed one can leave it a little too small, by chance) and then serves them all.
REUSE_CHILD = """
import json, resource, torch
from twdeploy.runtime import allocator
allocator.configure()
reusing = allocator.describe().endswith("freed memory reused")
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
each = []
for _ in range(16):
    before = faults()
    torch.ones(16, 1024, 1024)
    each.append(faults() - before)
print(json.dumps({"reusing": reusing, "faults": each, "pages": allocator.describe()}))
"""
OWN_VARIABLES = (allocator.VARIABLE, allocator.REUSE_VARIABLE, "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")


def last_line(code: list[str], **env: str) -> str:
    """The last line ``python -c`` prints, with the allocator variables unset unless given in ``env``."""
    base = {k: v for k, v in os.environ.items() if k not in OWN_VARIABLES}
    out = subprocess.run([sys.executable, "-c", *code], capture_output=True, text=True, check=True, env={**base, **env})
    return out.stdout.strip().splitlines()[-1]


def run_child(mode: str, **env: str) -> dict:
    return json.loads(last_line([CHILD, mode], **env))


@needs_thp
def test_huge_pages_cut_page_faults() -> None:
    used = run_child("use")
    assert used["active"]
    assert used["pages"].startswith("huge pages (THP_MEM_ALLOC_ENABLE=1")
    assert used["faults"] < SMALL_PAGES / 10  # the unaligned ends of the mapping stay in small pages


@needs_thp
def test_without_them_every_small_page_faults() -> None:
    default = run_child("default")
    assert not default["active"]
    assert default["faults"] > SMALL_PAGES / 2
    assert default["pages"].startswith("4 KiB pages")


@needs_thp
def test_users_zero_opts_out() -> None:
    opted_out = run_child("use", THP_MEM_ALLOC_ENABLE="0")
    assert not opted_out["active"]
    assert opted_out["faults"] > SMALL_PAGES / 2


@needs_thp
@needs_glibc
def test_the_cli_turns_them_on_after_its_imports() -> None:
    """torch reads the variable at its first allocation: importing the CLI must not allocate first."""
    code = "import twdeploy.cli.app as app, twdeploy.api as api; from twdeploy.runtime import allocator; "
    code += "allocator.configure(); print(allocator.describe())"
    assert last_line([code]).startswith("huge pages (THP_MEM_ALLOC_ENABLE=1")


def run_reuse_child(**env: str) -> dict:
    return json.loads(last_line([REUSE_CHILD], THP_MEM_ALLOC_ENABLE="0", **env))


def faulted(each: list[int]) -> int:
    """How many of the tensors faulted in more than half their pages."""
    return sum(count > SMALL_PAGES / 2 for count in each)


@needs_glibc
def test_opted_in_freed_memory_comes_back_without_faults() -> None:
    reused = run_reuse_child(TWDEPLOY_REUSE_MEMORY="1")
    assert reused["reusing"]
    without_faults = sum(count < SMALL_PAGES / 100 for count in reused["faults"])
    assert without_faults >= 10, f"faults of each tensor: {reused['faults']}"
    assert reused["pages"].endswith("freed memory reused")


@needs_glibc
@pytest.mark.parametrize("setting", [{}, {"TWDEPLOY_REUSE_MEMORY": "0"}])
def test_by_default_a_new_tensor_faults_again(setting: dict[str, str]) -> None:
    fresh = run_reuse_child(**setting)
    assert not fresh["reusing"]
    assert faulted(fresh["faults"]) == 16, f"faults of each tensor: {fresh['faults']}"
    assert "freed memory returned (TWDEPLOY_REUSE_MEMORY=" in fresh["pages"]


@needs_glibc
def test_glibcs_own_settings_win() -> None:
    kept = run_reuse_child(TWDEPLOY_REUSE_MEMORY="1", MALLOC_MMAP_MAX_="65536")
    assert not kept["reusing"]
    assert faulted(kept["faults"]) == 16, f"faults of each tensor: {kept['faults']}"


# RSS (MiB) with six freed 64 MiB tensors kept in the heap, and after release_freed_memory(above=argv[1]);
# then the faults of one more tensor (its pages come back fresh if they were released).
RELEASE_CHILD = """
import json, re, resource, sys
from pathlib import Path
import torch
from twdeploy.runtime import allocator
allocator.configure()
def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+) kB", Path("/proc/self/status").read_text())[1]) / 1024
for _ in range(6):
    torch.ones(16, 1024, 1024)
kept, free = rss(), allocator.free_heap_bytes()
released = allocator.release_freed_memory(above=int(sys.argv[1]))
after = rss()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.ones(16, 1024, 1024)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"released": released, "free": free, "kept": kept, "after": after, "faults": faults}))
"""


def run_release_child(above: int, **env: str) -> dict:
    return json.loads(last_line([RELEASE_CHILD, str(above)], THP_MEM_ALLOC_ENABLE="0", **env))


@needs_glibc
def test_release_hands_the_kept_memory_back() -> None:
    child = run_release_child(0, TWDEPLOY_REUSE_MEMORY="1")
    assert child["released"]
    assert child["free"] >= 64 * 2**20, child  # glibc counts the freed tensors as free heap memory
    assert child["kept"] - child["after"] >= 48, child  # at least three quarters of a 64 MiB block
    assert child["faults"] > SMALL_PAGES / 2, child


@needs_glibc
def test_release_keeps_what_is_under_its_threshold() -> None:
    child = run_release_child(2**40, TWDEPLOY_REUSE_MEMORY="1")
    assert not child["released"]
    assert abs(child["kept"] - child["after"]) < 16, child
    assert child["faults"] < SMALL_PAGES / 100, child


@needs_glibc
def test_release_without_reuse_does_nothing() -> None:
    child = run_release_child(0)
    assert not child["released"]
    assert abs(child["kept"] - child["after"]) < 16, child


def fake_virtio(root: Path, name: str, device: str, features: str, bound: bool = True) -> None:
    """One ``/sys/bus/virtio/devices`` entry: its ``device`` id, ``features`` bit string and ``driver`` link."""
    entry = root / name
    entry.mkdir(parents=True)
    (entry / "device").write_text(f"{device}\n")
    (entry / "features").write_text(f"{features}\n")
    if bound:
        (entry / "driver").symlink_to(root)


REPORTING = "0110010100000000000000000000000010"  # bit 5: VIRTIO_BALLOON_F_REPORTING


def test_a_reporting_balloon_is_found(tmp_path: Path) -> None:
    fake_virtio(tmp_path, "virtio0", "0x0001", REPORTING)  # a network card with the same bit set
    assert not allocator.free_page_reporting(tmp_path)
    fake_virtio(tmp_path, "virtio1", "0x0005", REPORTING)
    assert allocator.free_page_reporting(tmp_path)


@pytest.mark.parametrize(
    ("features", "bound"),
    [("0110000100000000", True), (REPORTING, False), ("01100", True), ("", True)],
    ids=["no-reporting-bit", "no-driver", "short-feature-string", "empty"],
)
def test_a_balloon_without_reporting_is_not(tmp_path: Path, features: str, bound: bool) -> None:
    fake_virtio(tmp_path, "virtio0", "0x0005", features, bound)
    assert not allocator.free_page_reporting(tmp_path)


def test_unreadable_entries_and_no_virtio_bus(tmp_path: Path) -> None:
    (tmp_path / "virtio0").mkdir()  # no device / features files
    fake_virtio(tmp_path, "virtio1", "not-hex", REPORTING)
    assert not allocator.free_page_reporting(tmp_path)
    assert not allocator.free_page_reporting(tmp_path / "missing")
