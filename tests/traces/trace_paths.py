"""Where the trace reader tests find their fixtures and the real captures."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "traces"
_SHARED = [ROOT.parent / "shared" / "traces", Path("/work/shared/traces")]


def shared_trace(name: str) -> Path:
    """A real trace from ../shared/traces, or skip the test when it is not there."""
    for folder in _SHARED:
        if (folder / name).is_file():
            return folder / name
    pytest.skip(f"{name} not found in ../shared/traces (real captures are not in the repo)")

# A capture with kmem events, odd task names, older formats and events that are not ours.
KMEM = """\
# tracer: nop
#
            bash-14069   [001] .....  2390.829134: mm_filemap_map_pages: dev=254:0 ino=52db4 ofs=847872-913407
 Web Content-1234    [000] d..1.  2390.829135: mm_page_alloc: page=00000000c5c8a7d1 pfn=0x10a06e order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO
 kworker/u8:2-ev-77    [001] .....  2390.829136: mm_page_alloc: page=000000003bd1c2a0 pfn=0x10a070 order=2 migratetype=0 gfp_flags=GFP_KERNEL|__GFP_COMP
 Web Content-1234    [000] d..1.  2390.829137: mm_page_free: page=00000000c5c8a7d1 pfn=0x10a06e order=0
            bash-14069   [001] .....  2390.829138: sched_switch: prev_comm=bash prev_pid=14069 prev_prio=120
            bash-14069   [001] .....  2390.829139: mm_page_alloc: page=(null) pfn=0x0 order=9 migratetype=1 gfp_flags=GFP_TRANSHUGE
            bash-14069   [001] .....  2390.829140: mm_page_alloc_zone_locked: page=0000000001 pfn=0x10a070 order=0 migratetype=1 percpu_refill=1
            bash-14069   [001] .....  2390.829141: mm_filemap_add_to_page_cache: dev 254:0 ino 52db4 page=0000000012345678 pfn=1090000 ofs=917504
            bash-14069   [001] .....  2390.829142: mm_filemap_add_to_page_cache: dev 254:0 ino 52db4 pfn=0x10a070 ofs=921600 order=2
            bash-14069   [001] .....  2390.829143: tracing_mark_write: hello: mm_filemap_fault: dev=1:1 ino=1 ofs=0
           <...>-99     (   99) [000] .....  2390.829144: mm_page_free: page=00000000c5c8a7d1 pfn=0x10a070 order=2
            bash-14069   [001] .....  2390.829145: mm_filemap_fault: dev=254:0 ino=52db4 ofs=1261568
"""  # noqa: E501
