"""use_huge_pages: large tensors come in 2 MiB pages, so a pass faults in far fewer pages."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from twdeploy.runtime import allocator

pytestmark = pytest.mark.skipif(
    allocator.kernel_mode() not in ("always", "madvise"), reason="the kernel does not offer transparent huge pages"
)

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


def last_line(code: list[str], **env: str) -> str:
    """The last line ``python -c`` prints, with THP_MEM_ALLOC_ENABLE unset unless given in ``env``."""
    base = {k: v for k, v in os.environ.items() if k != allocator.VARIABLE}
    out = subprocess.run([sys.executable, "-c", *code], capture_output=True, text=True, check=True, env={**base, **env})
    return out.stdout.strip().splitlines()[-1]


def run_child(mode: str, **env: str) -> dict:
    return json.loads(last_line([CHILD, mode], **env))


def test_huge_pages_cut_page_faults() -> None:
    used = run_child("use")
    assert used["active"]
    assert used["pages"].startswith("huge pages (THP_MEM_ALLOC_ENABLE=1")
    assert used["faults"] < SMALL_PAGES / 10  # the unaligned ends of the mapping stay in small pages


def test_without_them_every_small_page_faults() -> None:
    default = run_child("default")
    assert not default["active"]
    assert default["faults"] > SMALL_PAGES / 2
    assert default["pages"].startswith("4 KiB pages")


def test_users_zero_opts_out() -> None:
    opted_out = run_child("use", THP_MEM_ALLOC_ENABLE="0")
    assert not opted_out["active"]
    assert opted_out["faults"] > SMALL_PAGES / 2


def test_the_cli_turns_them_on_after_its_imports() -> None:
    """torch reads the variable at its first allocation: importing the CLI must not allocate first."""
    code = "import twdeploy.cli.app as app, twdeploy.api as api; from twdeploy.runtime import allocator; "
    code += "print(allocator.use_huge_pages())"
    assert last_line([code]) == "True"
