"""Physical memory layout: DRAM banks and MTE tag-storage regions.

Each tag region is described as the devicetree binding ``arm,mte-tag-storage`` does under
reserved-memory (arm64 dynamic tag storage RFC, 2023-2024)::

    tags0: tag-storage@8f8000000 {
        compatible = "arm,mte-tag-storage";
        reg = <0x08 0xf8000000 0x00 0x4000000>;   // tag storage: 64 MiB
        block-size = <0x1000>;                    // 4 KiB
        tagged-memory = <&memory0>;               // the 2 GiB it serves
    };

MTE keeps 4 bits per 16-byte granule, so one 4 KiB tag page holds the tags of 32 data pages
(128 KiB); a region's tag range is exactly 1/32 of its tagged range::

      tagged range  S ........................................ S + 32*N pages
                    |<- 32 data pages ->|<- 32 data pages ->|
      tag range     T [tag page 0]      [tag page 1]  ...    T + N pages

    data PFN p  ->  tag page  T + (p - S) // 32
                ->  tag block (allocation unit): that page rounded down to
                    lcm(PAGE_SIZE, block-size) / PAGE_SIZE tag pages

``block-size`` is the smallest amount of tag storage whose tags cover one contiguous data range
(memory controllers interleave), so tag storage is reserved in tag blocks, never in single pages.

All tag pages of all regions get one global index, the *tag-page index*; blocks likewise get a
*tag-block index*. Per-tag-page state elsewhere is an array over this index.

Simplification: every DRAM byte outside tag storage is ordinary data memory; data memory that
no region covers can hold untagged data only.

Per-frame arrays are dense over the PFN span, from the lowest DRAM address to the highest,
holes between banks included. A layout whose span would not fit in this machine's memory is
refused before anything is allocated (:func:`check_memory`, :data:`BYTES_PER_PFN`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from tagcache.errors import LayoutError, ResourceError
from tagcache.units import PAGE_SHIFT, PAGE_SIZE, format_bytes

MAX_TAG_REGIONS = 32
TAG_RATIO = 32  # data pages per tag page: 4 KiB of data needs 128 bytes of tags
PHYS_ADDR_LIMIT = 1 << 52
"""arm64's largest physical address space (52 bits, FEAT_LPA): no DRAM byte lies beyond."""

BYTES_PER_PFN = 40
"""Simulator memory per PFN of the span at the peak of a run: 38.4 bytes measured (tracemalloc
peak, temporaries included, checker on) as the slope between the default scenario at 4 and at
16 GiB, when the layout kept 9 of them (now ``block_map``, a 32nd of 4 bytes, and, once read,
``pfn_to_block`` and ``taggable_mask``: 5); the allocator, anonymous memory, tag storage and
checker the rest. Rounded up."""


def mem_available() -> int | None:
    """Bytes this machine can still give a process (/proc/meminfo MemAvailable), or None
    where that is not known."""
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(need: int, what: str) -> None:
    """Raise :class:`ResourceError` when ``need`` bytes of simulator memory would not fit in
    MemAvailable; ``what`` says what was estimated (pages, per-page cost), in one line."""
    avail = mem_available()
    if avail is not None and need > avail:
        raise ResourceError(f"{what} needs about {format_bytes(need)} of simulator memory, "
                            f"more than the {format_bytes(avail)} available (MemAvailable)")


def span_text(nr_pfns: int, dram_pages: int) -> str:
    """The span in words, for estimates: ``1,081,344 pages (4.1 GiB)``, and its holes."""
    out = f"{nr_pfns:,} simulated pages ({format_bytes(nr_pfns * PAGE_SIZE)})"
    if nr_pfns > dram_pages:
        out += (f", {nr_pfns - dram_pages:,} of them holes between DRAM banks (the arrays "
                f"span every PFN from the lowest DRAM address to the highest)")
    return out


@dataclass(frozen=True)
class TagRegion:
    """One ``arm,mte-tag-storage`` node: byte addresses and sizes as in the devicetree."""

    name: str
    tag_base: int
    tag_size: int
    block_size: int
    tagged_base: int
    tagged_size: int

    @property
    def unit_pages(self) -> int:
        """Tag pages per tag block: lcm(PAGE_SIZE, block-size) / PAGE_SIZE."""
        return math.lcm(PAGE_SIZE, self.block_size) // PAGE_SIZE

    @property
    def tag_pages(self) -> int:
        return self.tag_size >> PAGE_SHIFT

    @property
    def tag_pfn(self) -> int:
        return self.tag_base >> PAGE_SHIFT

    @property
    def tagged_pfn(self) -> int:
        return self.tagged_base >> PAGE_SHIFT

    @property
    def tagged_pages(self) -> int:
        return self.tagged_size >> PAGE_SHIFT


def _overlap(a0: int, a1: int, b0: int, b1: int) -> bool:
    return a0 < b1 and b0 < a1


def _rng(base: int, size: int) -> str:
    return f"[{base:#x}, {base + size:#x})"


@dataclass
class MachineLayout:
    """DRAM banks plus up to 32 tag regions, validated on construction.

    Precomputes the tag-block index (-1 when it cannot be tagged) of every granule of
    ``1 << block_shift`` PFNs of the DRAM span (``block_map``), so the hot paths only index
    an array: a granule is at most a tag page's 32 data pages, aligned so that no tag block
    or tagged range starts or ends inside one (32 PFNs on every layout whose tagged ranges
    start 128 KiB-aligned from the lowest DRAM page; 1 PFN at worst). The per-PFN arrays are
    derived from the banks, the regions and ``block_map``: ``pfn_to_block`` and
    ``taggable_mask`` on first read, then kept (the checker indexes them; the
    engine reads ``block_map`` and shares ``taggable_mask`` with the page
    allocator); ``present``, ``is_tag_storage`` and ``data_pfn_mask`` at each read, a new
    array each time (the allocator copies ``data_pfn_mask`` once; a stored copy would cost a
    byte per simulated page for nothing), and ``tag_page_pfn`` likewise.
    """

    dram: list[tuple[int, int]]
    regions: list[TagRegion]
    pfn_base: int = field(init=False)
    nr_pfns: int = field(init=False)

    def __post_init__(self) -> None:
        self._validate()
        lo = min(b for b, _ in self.dram) >> PAGE_SHIFT
        hi = max(b + s for b, s in self.dram) >> PAGE_SHIFT
        self.pfn_base, self.nr_pfns = lo, hi - lo
        dram_pages = sum(s for _, s in self.dram) >> PAGE_SHIFT
        check_memory(self.nr_pfns * BYTES_PER_PFN,
                     f"a machine of {span_text(self.nr_pfns, dram_pages)} at {BYTES_PER_PFN} B "
                     f"a page")
        self._dram_pages = dram_pages
        # Global tag-page and tag-block numbering, region by region.
        self.region_tag_page0: list[int] = []
        self.region_block0: list[int] = []
        tp = blk = 0
        for r in self.regions:
            self.region_tag_page0.append(tp)
            self.region_block0.append(blk)
            tp += r.tag_pages
            blk += r.tag_pages // r.unit_pages
        self.nr_tag_pages, self.nr_tag_blocks = tp, blk
        # The granule: the largest power of two up to TAG_RATIO PFNs that divides every
        # tagged range's offset in the span and every tag block's data pages.
        shift = 5
        for r in self.regions:
            for n in (r.tagged_pfn - lo, TAG_RATIO * r.unit_pages):
                while n % (1 << shift):
                    shift -= 1
        self.block_shift = shift
        self.block_map = np.full(-(-self.nr_pfns >> shift), -1, dtype=np.int32)
        # Per tag page: its block; per block: its first tag page and page count.
        self.tag_page_block = np.empty(tp, dtype=np.int32)
        self.block_first_tag_page = np.empty(blk, dtype=np.int32)
        self.block_tag_pages = np.empty(blk, dtype=np.int32)
        for r, tp0, b0 in zip(self.regions, self.region_tag_page0, self.region_block0, strict=True):
            # Each block's run of 32 * unit_pages data pages, without a temporary per granule.
            g0, nb = (r.tagged_pfn - lo) >> shift, r.tag_pages // r.unit_pages
            self.block_map[g0:g0 + (r.tagged_pages >> shift)].reshape(nb, -1)[:] = (
                b0 + np.arange(nb, dtype=np.int32))[:, None]
            idx = np.arange(r.tag_pages, dtype=np.int64)
            self.tag_page_block[tp0:tp0 + r.tag_pages] = b0 + idx // r.unit_pages
            self.block_first_tag_page[b0:b0 + nb] = tp0 + np.arange(nb) * r.unit_pages
            self.block_tag_pages[b0:b0 + nb] = r.unit_pages

    # -- per-PFN masks, computed (see the class docstring) ---------------------------------

    @property
    def present(self) -> np.ndarray:
        """Per PFN of the span: in a DRAM bank (False in the holes between banks)."""
        out = np.zeros(self.nr_pfns, dtype=bool)
        for base, size in self.dram:
            out[(base >> PAGE_SHIFT) - self.pfn_base:
                ((base + size) >> PAGE_SHIFT) - self.pfn_base] = True
        return out

    @property
    def is_tag_storage(self) -> np.ndarray:
        """Per PFN of the span: a tag-storage page."""
        out = np.zeros(self.nr_pfns, dtype=bool)
        for r in self.regions:
            t0 = r.tag_pfn - self.pfn_base
            out[t0:t0 + r.tag_pages] = True
        return out

    @property
    def data_pfn_mask(self) -> np.ndarray:
        """Per PFN of the span: usable for data (in DRAM, not tag storage)."""
        return self.present & ~self.is_tag_storage

    @cached_property
    def pfn_to_block(self) -> np.ndarray:
        """Per PFN of the span: its tag block, -1 if it cannot be tagged (int32)."""
        return np.repeat(self.block_map, 1 << self.block_shift)[:self.nr_pfns]

    @cached_property
    def taggable_mask(self) -> np.ndarray:
        """Per PFN of the span: covered by a tag region (``pfn_to_block >= 0``)."""
        return np.repeat(self.block_map >= 0, 1 << self.block_shift)[:self.nr_pfns]

    def block_first_frame(self) -> np.ndarray:
        """Per tag block: the index in the span (PFN less ``pfn_base``) of the first of the
        data pages it serves, which follow it contiguously (int64)."""
        granule = np.flatnonzero(self.block_map >= 0)
        first = np.full(self.nr_tag_blocks, -1, np.int64)
        first[self.block_map[granule[::-1]]] = granule[::-1]     # the lowest granule wins
        return first << self.block_shift

    @property
    def tag_page_pfn(self) -> np.ndarray:
        """Per tag page: its PFN."""
        out = np.empty(self.nr_tag_pages, dtype=np.int64)
        for r, tp0 in zip(self.regions, self.region_tag_page0, strict=True):
            out[tp0:tp0 + r.tag_pages] = r.tag_pfn + np.arange(r.tag_pages, dtype=np.int64)
        return out

    # -- queries ---------------------------------------------------------------------------

    @property
    def data_pages(self) -> int:
        """Pages usable for data (DRAM minus tag storage, which lies in DRAM, one region's
        apart from another's: validated)."""
        return self._dram_pages - self.nr_tag_pages

    @property
    def tag_storage_bytes(self) -> int:
        return self.nr_tag_pages * PAGE_SIZE

    def tag_block_of_pfn(self, pfn: int | np.ndarray) -> int | np.ndarray:
        """Tag block holding the tags of data PFN(s); -1 if the PFN cannot be tagged."""
        return self.block_map[(np.asarray(pfn) - self.pfn_base) >> self.block_shift]

    def block_tag_pages_range(self, block: int) -> range:
        """The tag pages of tag block ``block`` (one allocation unit of tag storage)."""
        first = int(self.block_first_tag_page[block])
        return range(first, first + int(self.block_tag_pages[block]))

    def tag_page_of_pfn(self, pfn: int) -> int:
        """Tag-page index holding the tags of one data PFN (the unrounded mapping)."""
        for r, tp0 in zip(self.regions, self.region_tag_page0, strict=True):
            if r.tagged_pfn <= pfn < r.tagged_pfn + r.tagged_pages:
                return tp0 + (pfn - r.tagged_pfn) // TAG_RATIO
        raise ValueError(f"PFN {pfn:#x} is not in any tagged-memory range")

    def describe(self) -> str:
        parts = [f"DRAM {format_bytes(sum(s for _, s in self.dram))}"]
        for r in self.regions:
            parts.append(
                f"{r.name}: tags {_rng(r.tag_base, r.tag_size)} ({format_bytes(r.tag_size)}, "
                f"block {format_bytes(r.block_size)}) for {_rng(r.tagged_base, r.tagged_size)}"
            )
        return "; ".join(parts)

    # -- validation ------------------------------------------------------------------------

    def _validate(self) -> None:
        if not self.dram:
            raise LayoutError("layout: no DRAM bank given")
        if not self.regions:
            raise LayoutError("layout: no tag region given (at least one arm,mte-tag-storage "
                              "region is needed)")
        for i, (base, size) in enumerate(self.dram):
            if size <= 0 or base % PAGE_SIZE or size % PAGE_SIZE:
                raise LayoutError(
                    f"dram[{i}] {_rng(base, size)}: base and size must be non-zero multiples "
                    f"of 4 KiB"
                )
            if base < 0 or base + size > PHYS_ADDR_LIMIT:
                raise LayoutError(
                    f"dram[{i}] {_rng(base, size)}: beyond arm64's 52-bit physical address "
                    f"space")
            for j, (b2, s2) in enumerate(self.dram[:i]):
                if _overlap(base, base + size, b2, b2 + s2):
                    raise LayoutError(f"dram[{i}] {_rng(base, size)} overlaps dram[{j}]")
        if len(self.regions) > MAX_TAG_REGIONS:
            raise LayoutError(
                f"layout has {len(self.regions)} tag regions; at most {MAX_TAG_REGIONS} allowed"
            )

        def in_dram(base: int, size: int) -> bool:
            return any(b <= base and base + size <= b + s for b, s in self.dram)

        for ri, r in enumerate(self.regions):
            where = f"tag region {r.name!r}"

            def bad(msg: str, ri: int = ri) -> LayoutError:
                return LayoutError(msg, region=ri)

            if r.block_size <= 0 or r.block_size % PAGE_SIZE:
                raise bad(f"{where}: block-size {r.block_size:#x} is not a multiple of 4 KiB")
            if r.tag_size <= 0 or r.tagged_size <= 0:
                raise bad(f"{where}: reg and tagged-memory sizes must be non-zero")
            if r.tag_size * TAG_RATIO != r.tagged_size:
                raise bad(
                    f"{where}: tag storage {format_bytes(r.tag_size)} is not exactly 1/32 of "
                    f"tagged memory {format_bytes(r.tagged_size)} (needs "
                    f"{format_bytes(r.tagged_size / TAG_RATIO)})"
                )
            unit = r.unit_pages * PAGE_SIZE
            if r.tag_base % unit or r.tag_size % unit:
                raise bad(
                    f"{where}: reg {_rng(r.tag_base, r.tag_size)} is not aligned to its "
                    f"allocation unit lcm(4 KiB, block-size) = {format_bytes(unit)}"
                )
            if r.tagged_base % PAGE_SIZE:
                raise bad(f"{where}: tagged-memory base {r.tagged_base:#x} is not 4 KiB aligned")
            if not in_dram(r.tag_base, r.tag_size):
                raise bad(f"{where}: reg {_rng(r.tag_base, r.tag_size)} is not in DRAM")
            if not in_dram(r.tagged_base, r.tagged_size):
                raise bad(
                    f"{where}: tagged-memory {_rng(r.tagged_base, r.tagged_size)} is not in DRAM"
                )
        for i, r in enumerate(self.regions):
            for q in self.regions:
                if _overlap(r.tag_base, r.tag_base + r.tag_size,
                            q.tagged_base, q.tagged_base + q.tagged_size):
                    raise LayoutError(
                        f"tag region {r.name!r}: tag range {_rng(r.tag_base, r.tag_size)} lies "
                        f"inside tagged memory of {q.name!r}; tag storage cannot be tagged",
                        region=i,
                    )
            for q in self.regions[:i]:
                if _overlap(r.tag_base, r.tag_base + r.tag_size, q.tag_base,
                            q.tag_base + q.tag_size):
                    raise LayoutError(
                        f"tag region {r.name!r}: tag range overlaps that of {q.name!r}",
                        region=i,
                    )
                if _overlap(r.tagged_base, r.tagged_base + r.tagged_size, q.tagged_base,
                            q.tagged_base + q.tagged_size):
                    raise LayoutError(
                        f"tag region {r.name!r}: tagged-memory range overlaps that of {q.name!r}",
                        region=i,
                    )
            if len({q.name for q in self.regions}) != len(self.regions):
                raise LayoutError("tag region names must be unique")


def simple_layout(data_bytes: int, block_size: int = PAGE_SIZE, base: int = 0x8000_0000
                  ) -> MachineLayout:
    """One DRAM bank of ``data_bytes`` tagged memory followed by its tag storage (1/32)."""
    tag_size = data_bytes // TAG_RATIO
    unit = math.lcm(PAGE_SIZE, block_size)
    tag_base = base + data_bytes
    tag_base = -(-tag_base // unit) * unit
    dram_size = tag_base + tag_size - base
    return MachineLayout(
        dram=[(base, dram_size)],
        regions=[TagRegion("tags0", tag_base, tag_size, block_size, base, data_bytes)],
    )
