"""The cleancache frontend, tag-storage backend, tag reservation, page allocator and anonymous
memory (engine/cleancache.py, tagstore.py, tags.py, page_alloc.py, anon.py): their refusals,
reporting figures, the pack policy and make_room, and the same sequence compiled and with
NUMBA_DISABLE_JIT=1. Their rules are tests/test_backend.py, test_tag_storage.py and
test_anon.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tagcache.engine import cleancache as ecc
from tagcache.engine import rc
from tagcache.engine import tags as etg
from tagcache.engine import tagstore as ets
from tagcache.hw.layout import simple_layout

KIB, MIB = 1 << 10, 1 << 20

NR_SLOTS = 48
LAYOUTS = {blk: simple_layout(1 * MIB, blk) for blk in (4 * KIB, 8 * KIB, 16 * KIB)}
"""256 data pages, 8 tag pages, in blocks of 1, 2 or 4 tag pages."""

BACKEND_ARRAYS = ("tp_state", "tp_order", "tp_slot", "tp_prev", "tp_next", "in_stack",
                  "free_stack", "slot_tp")


def compiled_backend_state(cc) -> dict:
    d = {k: getattr(cc, k).tolist() for k in BACKEND_ARRAYS}
    c = cc.c
    d.update(free_top=int(c[ets.FREE_TOP]), nr_free=int(c[ets.NR_FREE]),
             nr_cached=int(c[ets.NR_CACHED]), peak_cached=int(c[ets.PEAK_CACHED]),
             evicted=int(c[ets.EVICTED]))
    return d


def test_no_backend_counts_nothing():
    cc = ecc.make_cleancache()
    ecc.cleancache_store_folio(cc, 0, 2, False, True)
    assert not ecc.cleancache_restore_folio(cc, 0, 4)
    ecc.cleancache_invalidate_range(cc, 0, 9)
    assert ecc.cleancache_cached(cc) == 0
    assert set(ecc.cleancache_report(cc).values()) == {0}
    assert ecc.simulator_bytes_per_tag_page(cc) == 0.0


def test_reporting_figures():
    layout = LAYOUTS[8 * KIB]                   # 8 tag pages in 4 blocks
    cc = ecc.make_cleancache("cleancache", layout, NR_SLOTS)
    # Per tag page: tp_state, tp_order (1 + 1), tp_slot, free_stack (4 + 4), in_stack (1);
    # tp_prev and tp_next have a sentinel (2 x 4 x 9 / 8); 4 bytes of refcount per block.
    assert ecc.simulator_bytes_per_tag_page(cc) == (8 * 12 + 2 * 4 * 10 + 4 * 4) / 8 == 24.0
    assert ecc.metadata_bytes_per_tag_page(cc) == ecc.TAG_PAGE_RECORD.itemsize == 12
    with pytest.raises(ValueError, match="policy"):
        ecc.make_cleancache("cleancache", layout, NR_SLOTS, "halves")


def test_the_single_door_refuses_an_edge_the_diagram_lacks():
    """Releasing a block that holds no tags (FREE -> FREE) is refused: the state is left as
    it was and the refusal counted."""
    layout = LAYOUTS[4 * KIB]
    cc = ecc.make_cleancache("cleancache", layout, NR_SLOTS)
    before = compiled_backend_state(cc)
    ets.tagstore_release_block(cc, 3)
    assert compiled_backend_state(cc) == before
    assert int(cc.c[ets.BAD_EDGES]) == 1 and int(cc.c[ets.BAD_EDGE_TP]) == 3


# -- (b) tag storage --------------------------------------------------------------------------

def test_untaggable_pfn_is_refused_before_anything_changes():
    layout = simple_layout(1 * MIB)
    bad = np.array([layout.pfn_base + 3, layout.pfn_base + 256], np.int64)   # a tag page
    ts = etg.make_tag_storage(layout, ecc.make_cleancache())
    assert etg.reserve_tag_storage(ts, bad, 0) == rc.ERR_UNTAGGABLE
    assert etg.tag_storage_report(ts)["reservations"] == 0 and not ts.refs.any()


# -- (c) page allocator and anonymous memory ---------------------------------------------------

def split_layout(blk: int):
    """3 untaggable pages (so PFN alignment is not index alignment), 256 tagged pages, their
    8 tag pages, 32 more untaggable pages: one DRAM bank."""
    from tagcache.hw.layout import MachineLayout, TagRegion
    base = 0x8000_0000
    return MachineLayout(dram=[(base - 0x3000, 0x3000 + 1 * MIB + 32 * KIB + 128 * KIB)],
                         regions=[TagRegion("tags0", base + 1 * MIB, 32 * KIB, blk, base,
                                            1 * MIB)])


SPLIT = {blk: split_layout(blk) for blk in (4 * KIB, 16 * KIB)}


def test_double_free_is_refused():
    from tagcache.engine import page_alloc as epa

    layout = SPLIT[4 * KIB]
    pa = epa.make_page_alloc(layout, np.zeros(layout.nr_tag_blocks, np.int32), "sequential")
    code, pfns = epa.page_alloc(pa, 2, True, 0)
    assert code == rc.OK and pfns.tolist() == [layout.pfn_base + 3, layout.pfn_base + 4]
    before = pa.free.tolist(), int(pa.c[epa.NR_FREE])
    assert epa.free_pfns(pa, np.concatenate([pfns, pfns[:1] + 5])) == rc.ERR_DOUBLE_FREE
    assert (pa.free.tolist(), int(pa.c[epa.NR_FREE])) == before      # nothing freed


@pytest.mark.parametrize("blk", sorted(SPLIT))
def test_pack_puts_tagged_folios_under_reserved_blocks_and_untagged_ones_elsewhere(blk):
    """Policy "pack": a tagged allocation takes blocks under an already reserved tag block
    first; an untagged one avoids them while it can."""
    from tagcache.engine import page_alloc as epa

    layout = SPLIT[blk]
    refs = np.zeros(layout.nr_tag_blocks, np.int32)
    pa = epa.make_page_alloc(layout, refs, "pack", 8, 1)
    tagged_pfns = np.flatnonzero(layout.taggable_mask)
    per_block = len(tagged_pfns) // layout.nr_tag_blocks
    b = layout.nr_tag_blocks - 1
    refs[b] = 1                                  # the last block holds tags for someone
    p2b = layout.pfn_to_block
    code, pfns = epa.page_alloc(pa, per_block // 2, True, 0)
    assert code == rc.OK and (p2b[pfns - layout.pfn_base] == b).all()
    # Untagged: the untaggable frames first, then taggable ones under unreserved blocks.
    untaggable = int((layout.data_pfn_mask & ~layout.taggable_mask).sum())
    code, pfns = epa.page_alloc(pa, untaggable + per_block, False, 0)
    assert code == rc.OK
    assert (p2b[pfns - layout.pfn_base] != b).all()


def test_make_room_is_asked_before_anything_is_taken():
    """An operation that takes frames asks its caller for room (NEED_ROOM, how many in
    ``c[ROOM_WANTED]``) before it changes anything, then goes on when called again."""
    from tagcache.engine import anon as ean
    from tagcache.engine import page_alloc as epa

    layout = SPLIT[4 * KIB]
    ts = etg.make_tag_storage(layout, ecc.make_cleancache())
    pa = epa.make_page_alloc(layout, ts.refs, "sequential")
    an = ean.make_anon(pa, ts)
    free = int(pa.c[epa.NR_FREE])
    assert ean.anon_mte_map(an, 1, 40, 8, False) == rc.NEED_ROOM
    assert int(an.c[ean.ROOM_WANTED]) == 40 and int(pa.c[epa.NR_FREE]) == free
    assert ean.anon_procs(an) == {} and not ts.refs.any()
    asked = []
    assert ean.anon_call(an, ean.anon_mte_map, 1, 40, 8, make_room=asked.append) == rc.OK
    assert asked == [40] and int(pa.c[epa.NR_FREE]) == free - 40
    assert ean.anon_report(an)["nr_tagged"] == 8


# -- the step functions as plain Python ----------------------------------------------------------

SCRIPT = """
import json, numpy as np
from tagcache.costs import CostTable
from tagcache.engine import anon as ean, cleancache as ecc, page_alloc as epa, tags as etg
from tagcache.hw.layout import MachineLayout, TagRegion
base = 0x8000_0000
layout = MachineLayout(dram=[(base - 0x3000, 0x3000 + (1 << 20) + (160 << 10))],
                       regions=[TagRegion("t", base + (1 << 20), 32 << 10, 8192, base, 1 << 20)])
out = []
for policy, cc_policy in (("random", "whole"), ("pack", "split"), ("sequential", "whole")):
    cc = ecc.make_cleancache("cleancache", layout, 64, cc_policy)
    ts = etg.make_tag_storage(layout, cc, CostTable(), calls=4)
    pa = epa.make_page_alloc(layout, ts.refs, policy, 8, 3)
    an = ean.make_anon(pa, ts, 1, nr_pids=2, pool_pages=16)
    rng = np.random.default_rng(11)
    room = []
    for i in range(400):
        k = int(rng.integers(0, 8))
        pid, n = int(rng.integers(0, 6)), int(rng.integers(0, 40))
        if k == 0:
            code = ean.anon_call(an, ean.anon_mte_map, pid, n, int(rng.integers(0, 40)),
                                 make_room=room.append)
        elif k == 1:
            code = ean.anon_fork(an, pid, int(rng.integers(0, 6)))
        elif k == 2:
            code = ean.anon_call(an, ean.anon_cow, pid, n, make_room=room.append)
        elif k == 3:
            code = ean.anon_swap_out(an, pid, n)
        elif k == 4:
            code = ean.anon_call(an, ean.anon_swap_in, pid, n, make_room=room.append)
        elif k == 5:
            code = ean.anon_call(an, ean.anon_migrate, pid, n, make_room=room.append)
        elif k == 6:
            code = ean.anon_exit(an, pid)
        else:
            h, o = int(rng.integers(0, 60)), int(rng.integers(0, 3))
            ecc.cleancache_store_folio(cc, h - h % (1 << o), o, False, True)
            code = int(ecc.cleancache_restore_folio(cc, int(rng.integers(0, 64)), 1))
        out.append(int(code))
    out += [sorted((p, v.tolist()) for p, v in ean.anon_procs(an).items()),
            an.mapcount.tolist(), pa.free.tolist(), pa.tagged.tolist(), ts.refs.tolist(),
            list(etg.tag_storage_report(ts).values()), ean.anon_report(an),
            [a.tolist() for a in etg.reservation_calls(ts)], ecc.cleancache_report(cc),
            cc.tp_state.tolist(), cc.slot_tp.tolist(), room]
print(json.dumps(out))
"""


def test_uncompiled_engine_gives_the_same_results():
    """The step functions as plain Python (NUMBA_DISABLE_JIT=1, in a subprocess) and
    compiled give identical states after the same sequence, on every allocation policy."""
    runs = []
    for jit_off in ("0", "1"):
        env = dict(os.environ, NUMBA_DISABLE_JIT=jit_off)
        out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                             text=True, timeout=300, check=True)
        runs.append(json.loads(out.stdout))
    assert runs[0] == runs[1]
    codes = runs[0][:400]
    assert rc.OUT_OF_MEMORY in codes and rc.OK in codes
