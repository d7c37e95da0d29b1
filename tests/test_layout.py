"""hw/layout.py: the arm,mte-tag-storage rules, and the data PFN -> tag page/block mapping."""

from __future__ import annotations

import numpy as np
import pytest

from tagcache.errors import LayoutError, TagcacheError
from tagcache.hw.layout import MachineLayout, TagRegion, simple_layout

KIB, MIB = 1 << 10, 1 << 20
BASE = 0x8000_0000


def one_region(tag_size=2 * MIB, block=4 * KIB, tag_base=BASE + 64 * MIB,
               tagged_base=BASE, tagged_size=64 * MIB, dram=None) -> MachineLayout:
    dram = dram if dram is not None else [(BASE, 66 * MIB)]
    return MachineLayout(dram, [TagRegion("tags0", tag_base, tag_size, block, tagged_base,
                                          tagged_size)])


def two_regions(r1_tag_base, r1_tagged_base) -> MachineLayout:
    """tags0 serves [BASE, +32 MiB) from 1 MiB at BASE+64 MiB; tags1 is placed by the test."""
    return MachineLayout(
        [(BASE, 68 * MIB)],
        [TagRegion("tags0", BASE + 64 * MIB, MIB, 4 * KIB, BASE, 32 * MIB),
         TagRegion("tags1", r1_tag_base, MIB, 4 * KIB, r1_tagged_base, 32 * MIB)])


def raises_layout(fn, *words):
    with pytest.raises(LayoutError) as ei:
        fn()
    msg = str(ei.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    assert isinstance(ei.value, TagcacheError)       # so the CLI turns it into one line
    return msg


# -- rejected layouts ---------------------------------------------------------------------------

def test_tag_size_must_be_exactly_one_32nd():
    raises_layout(lambda: one_region(tag_size=1 * MIB), "'tags0'", "not exactly 1/32",
                  "1 MiB", "64 MiB", "needs 2 MiB")
    raises_layout(lambda: one_region(tag_size=4 * MIB, dram=[(BASE, 68 * MIB)]), "'tags0'",
                  "not exactly 1/32")


def test_block_size_must_be_a_multiple_of_4k():
    raises_layout(lambda: one_region(block=6 * KIB), "'tags0'", "block-size 0x1800",
                  "not a multiple of 4 KiB")
    raises_layout(lambda: one_region(block=0), "'tags0'", "block-size")


def test_tag_range_must_be_aligned_to_the_allocation_unit():
    # 16 KiB blocks: the 2 MiB tag range must start on a 16 KiB boundary.
    raises_layout(lambda: one_region(block=16 * KIB, tag_base=BASE + 64 * MIB + 4 * KIB,
                                     dram=[(BASE, 67 * MIB)]),
                  "'tags0'", "not aligned", "16 KiB")


def test_overlapping_tagged_ranges_rejected():
    raises_layout(lambda: two_regions(BASE + 65 * MIB, BASE + 16 * MIB),
                  "'tags1'", "tagged-memory range overlaps", "'tags0'")


def test_overlapping_tag_ranges_rejected():
    raises_layout(lambda: two_regions(BASE + 64 * MIB + 512 * KIB, BASE + 32 * MIB),
                  "'tags1'", "tag range overlaps", "'tags0'")


def test_tag_range_inside_a_tagged_range_rejected():
    # tags1 keeps its tags inside the memory tags0 serves: tag storage cannot be tagged.
    raises_layout(lambda: two_regions(BASE + 8 * MIB, BASE + 32 * MIB),
                  "'tags1'", "inside tagged memory of 'tags0'", "cannot be tagged")
    # ... or inside its own tagged range.
    raises_layout(lambda: one_region(tag_base=BASE), "'tags0'", "inside tagged memory")


def _many_regions(n: int) -> MachineLayout:
    """n regions of 128 KiB tagged memory, each with its one tag page after all data."""
    data = n * 128 * KIB
    regions = [TagRegion(f"t{i}", BASE + data + i * 4 * KIB, 4 * KIB, 4 * KIB,
                         BASE + i * 128 * KIB, 128 * KIB) for i in range(n)]
    return MachineLayout([(BASE, data + n * 4 * KIB)], regions)


def test_at_most_32_regions():
    ok = _many_regions(32)
    assert ok.nr_tag_pages == 32 and ok.nr_tag_blocks == 32
    raises_layout(lambda: _many_regions(33), "33 tag regions", "at most 32")


def test_ranges_outside_dram_rejected():
    # Tag storage past the end of the only DRAM bank.
    raises_layout(lambda: one_region(dram=[(BASE, 65 * MIB)]), "'tags0'", "reg", "not in DRAM")
    # Tagged memory starting below DRAM.
    raises_layout(lambda: one_region(tagged_base=BASE - 2 * MIB), "'tags0'", "tagged-memory",
                  "not in DRAM")


def test_bad_dram_and_duplicate_names_rejected():
    raises_layout(lambda: MachineLayout([], []), "no DRAM")
    raises_layout(lambda: one_region(dram=[(BASE, 66 * MIB), (BASE + MIB, MIB)]),
                  "dram[1]", "overlaps dram[0]")
    with pytest.raises(LayoutError, match="unique"):
        MachineLayout([(BASE, 68 * MIB)],
                      [TagRegion("t", BASE + 64 * MIB, MIB, 4 * KIB, BASE, 32 * MIB),
                       TagRegion("t", BASE + 65 * MIB, MIB, 4 * KIB, BASE + 32 * MIB,
                                 32 * MIB)])


# -- mapping ------------------------------------------------------------------------------------

def test_simple_layout_geometry(layout64):
    L = layout64
    S = BASE >> 12
    assert L.pfn_base == S
    assert L.data_pages == 16384
    assert L.nr_tag_pages == 512 and L.nr_tag_blocks == 512
    assert L.tag_storage_bytes == 2 * MIB
    # The tag-storage frames follow the data and can never be tagged.
    tag_pfn = L.regions[0].tag_pfn
    assert tag_pfn == S + 16384
    assert L.is_tag_storage[tag_pfn - S] and not L.is_tag_storage[tag_pfn - 1 - S]
    assert L.tag_block_of_pfn(tag_pfn) == -1
    assert not L.data_pfn_mask[tag_pfn - S]
    assert int(L.tag_page_pfn[0]) == tag_pfn


def test_block_size_4k_maps_32_data_pages_per_block(layout64):
    S = layout64.pfn_base
    blocks = layout64.tag_block_of_pfn(np.arange(S, S + 96))
    assert (blocks[:32] == 0).all()
    assert (blocks[32:64] == 1).all()
    assert (blocks[64:] == 2).all()
    assert layout64.tag_block_of_pfn(S + 16383) == 511
    assert layout64.tag_page_of_pfn(S + 31) == 0
    assert layout64.tag_page_of_pfn(S + 32) == 1
    assert layout64.regions[0].unit_pages == 1
    assert int(layout64.block_tag_pages[0]) == 1


def test_block_size_8k_maps_64_data_pages_per_block(layout64_8k):
    L = layout64_8k
    S = L.pfn_base
    assert L.regions[0].unit_pages == 2
    assert L.nr_tag_pages == 512 and L.nr_tag_blocks == 256
    blocks = L.tag_block_of_pfn(np.arange(S, S + 128))
    assert (blocks[:64] == 0).all() and (blocks[64:] == 1).all()
    # The unrounded tag page still changes every 32 data pages.
    assert [L.tag_page_of_pfn(S + i) for i in (0, 31, 32, 63, 64)] == [0, 0, 1, 1, 2]
    assert list(L.block_first_tag_page[:3]) == [0, 2, 4]
    assert list(L.tag_page_block[:4]) == [0, 0, 1, 1]


def test_tag_page_of_pfn_outside_tagged_memory(layout64):
    with pytest.raises(ValueError, match="not in any tagged-memory range"):
        layout64.tag_page_of_pfn(layout64.regions[0].tag_pfn)


def test_global_numbering_across_regions():
    # Two regions: tags0 (block 4 KiB) then tags1 (block 8 KiB) continue one numbering.
    L = MachineLayout(
        [(BASE, 68 * MIB)],
        [TagRegion("tags0", BASE + 64 * MIB, MIB, 4 * KIB, BASE, 32 * MIB),
         TagRegion("tags1", BASE + 65 * MIB, MIB, 8 * KIB, BASE + 32 * MIB, 32 * MIB)])
    assert L.nr_tag_pages == 512 and L.nr_tag_blocks == 256 + 128
    S1 = (BASE + 32 * MIB) >> 12
    assert L.tag_page_of_pfn(S1) == 256
    assert L.tag_block_of_pfn(S1) == 256
    assert L.tag_block_of_pfn(S1 + 64) == 257
    assert L.tag_block_of_pfn(S1 - 1) == 255
    assert int(L.tag_page_pfn[256]) == (BASE + 65 * MIB) >> 12
    # Each block's first data frame: its first PFN (less pfn_base), across both regions.
    first = L.block_first_frame()
    assert list(first[[0, 1, 255, 256, 257]]) == [0, 32, 255 * 32, S1 - L.pfn_base,
                                                  S1 - L.pfn_base + 64]
    assert (L.tag_block_of_pfn(first + L.pfn_base) == np.arange(L.nr_tag_blocks)).all()
    assert (L.tag_block_of_pfn(first[1:] + L.pfn_base - 1) == np.arange(L.nr_tag_blocks - 1)
            ).all()


def test_simple_layout_aligns_tag_storage_to_the_block():
    # Data starting 4 KiB past a 16 KiB boundary: tag storage is pushed up to the next one.
    L = simple_layout(64 * MIB, 16 * KIB, base=BASE + 4 * KIB)
    r = L.regions[0]
    assert r.tag_base == BASE + 64 * MIB + 16 * KIB
    assert r.tag_size * 32 == r.tagged_size
    assert L.nr_tag_blocks == 512 // 4


# -- hostile layouts (issue 9) ------------------------------------------------------------------

def test_block_mapping_matches_the_formula_for_every_block_size():
    for block in (4 * KIB, 8 * KIB, 16 * KIB, 64 * KIB):
        L = simple_layout(64 * MIB, block)
        unit = L.regions[0].unit_pages
        pfns = np.arange(L.pfn_base, L.pfn_base + 16384)
        assert np.array_equal(L.tag_block_of_pfn(pfns), (pfns - L.pfn_base) // 32 // unit)


def test_no_tag_region_rejected():
    raises_layout(lambda: MachineLayout([(BASE, 66 * MIB)], []), "no tag region")


def test_dram_beyond_52_bits_rejected():
    raises_layout(lambda: one_region(dram=[(BASE, 66 * MIB), (1 << 52, 4 * MIB)]),
                  "dram[1]", "52-bit")


def test_a_span_too_big_is_refused_before_allocating(monkeypatch):
    from tagcache.errors import ResourceError
    from tagcache.hw import layout as layout_mod

    monkeypatch.setattr(layout_mod, "mem_available", lambda: 1 << 30)
    # Banks 2^50 bytes apart: 2^38 PFNs of arrays would be terabytes; refused, not allocated.
    with pytest.raises(ResourceError) as ei:
        one_region(dram=[(BASE, 66 * MIB), (1 << 50, 4 * MIB)])
    msg = str(ei.value)
    assert "\n" not in msg
    assert "274,877,383,680 simulated pages" in msg and "holes between DRAM banks" in msg
    assert "needs about 10.0 TiB" in msg and "1 GiB available (MemAvailable)" in msg
    # A hole that fits is allocated over: the model does not care where banks lie.
    L = one_region(dram=[(BASE, 66 * MIB), (BASE + 1024 * MIB, 4 * MIB)])
    assert L.nr_pfns == 1028 * 256 and L.data_pages == (66 + 4) * 256 - 512


def test_mem_available_reads_meminfo():
    from tagcache.hw.layout import mem_available

    avail = mem_available()
    assert avail is None or avail > 0


@pytest.mark.parametrize("offset_pages", [0, 1, 4, 8, 32, 96])
def test_block_map_granules_give_every_pfn_its_block(offset_pages):
    """The per-PFN arrays derived from the granule map (block_map, 1 << block_shift PFNs a
    granule) equal the mapping written out PFN by PFN, whatever the tagged range's offset in
    the span (a granule never straddles a block or the range's ends); the masks computed at
    each read agree with their definitions."""
    tagged_base = BASE + offset_pages * 4 * KIB
    L = one_region(tag_base=BASE + 96 * MIB, tag_size=2 * MIB, tagged_base=tagged_base,
                   tagged_size=64 * MIB, dram=[(BASE, 100 * MIB)])
    assert L.block_shift == min(5, (offset_pages & -offset_pages).bit_length() - 1
                                if offset_pages else 5)
    want = np.full(L.nr_pfns, -1, np.int64)
    first = (tagged_base >> 12) - L.pfn_base
    want[first:first + 64 * MIB // (4 * KIB)] = np.arange(64 * MIB // (4 * KIB)) // 32
    assert L.pfn_to_block.dtype == np.int32 and np.array_equal(L.pfn_to_block, want)
    assert np.array_equal(L.taggable_mask, want >= 0)
    pfns = np.arange(L.nr_pfns) + L.pfn_base
    assert np.array_equal(L.tag_block_of_pfn(pfns), want)
    tag = np.zeros(L.nr_pfns, bool)
    tag[(BASE + 96 * MIB >> 12) - L.pfn_base:][:512] = True
    assert np.array_equal(L.is_tag_storage, tag)
    assert np.array_equal(L.data_pfn_mask, L.present & ~tag)
    assert L.data_pages == int(L.data_pfn_mask.sum()) == L.nr_pfns - 512
