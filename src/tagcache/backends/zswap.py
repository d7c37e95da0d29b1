"""``zswap``: a compressed, persistent pool in tag storage (zswap's contract, behind the same
hooks): clean evicted folios are kept compressed, several to a tag page, and since the pool is
persistent a page it holds is written back before its tag page goes to tags.

Compression: the traces carry no page contents, so every page compresses by the configured
``ratio`` (pages per tag page; zswap's zsmalloc packs objects across pages the same way):
unit ``u`` of the store is on tag page ``floor(u / ratio)``. With contents, lz4 or zstd would
set the ratio page by page; not modelled. A claim drops the units on the block's tag pages
(engine/tagstore.py edge D, each unit a page) and writes each back (``disk_write_page`` of the
cost table): writing back sleeps, so a claim from atomic context (copy_highpage(),
arch_swap_restore()) cannot do it and falls back as the 2024 RFC would, the tagged page waiting
for a fault and the writeback (counted: fallbacks, waits). Exclusive restore, as zswap's loads
are since Linux 6.5. Large folios are stored whole (unit by unit) and dropped whole. Per tag
page a kernel keeps the record of the 2024 design plus zsmalloc's handles (not counted: 12
bytes as declared).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from tagcache.backends.base import OP_RESERVE, BackendSpec, Param
from tagcache.backends.cma import record_wait
from tagcache.engine.choices import REPLACEMENTS
from tagcache.engine.tagstore import (
    FALLBACKS,
    W_DROPPED,
    W_EXTRA_NS,
    W_FALLBACK,
    W_SLEPT,
    WRITEBACKS,
    tagstore_hook,
)

P_RATIO, P_WRITE_NS, P_FAULT_NS = range(3)


def _setup(values: dict, layout, costs, seed: int) -> dict:
    r = float(values["ratio"])
    first = np.asarray(layout.block_first_tag_page, np.int64)
    end = first + np.asarray(layout.block_tag_pages, np.int64)
    ufirst = np.array([math.ceil(x * r) for x in first], np.int64)
    uend = np.array([math.ceil(x * r) for x in end], np.int64)
    return {"p": [r, costs.disk_write_page, costs.tag_fault],
            "units": (ufirst, uend - ufirst)}


SPEC = BackendSpec(
    name="zswap",
    summary="a compressed, persistent pool in tag storage: writes back before tags take "
            "a tag page",
    params=(
        Param("ratio", 2.0, "pages stored per tag page (the compression ratio: lz4 on page "
              "cache about 2, zstd about 3)", lo=1.0, hi=8.0, compare=(2.0,)),
        Param("replacement", "fifo", "which stored folio makes room for a new one",
              choices=REPLACEMENTS),
    ),
    label=lambda p: f"zswap in tag storage ({p['ratio']:g}x compressed, writes back)",
    persistent=True,
    may_sleep=True,
    oracle_bounded=False,               # ratio pages to a tag page: more room than the oracle
    setup=_setup,
)


@njit(cache=True)
def hook(cc, op, a, b):
    r = tagstore_hook(cc, op, a, b)
    if op == OP_RESERVE:
        c = cc.c
        n = c[W_DROPPED]
        if n:
            c[WRITEBACKS] += n
            ns = n * cc.p[P_WRITE_NS]
            if b:                       # atomic: fault on access once written back
                c[W_FALLBACK] += 1
                c[FALLBACKS] += 1
                record_wait(cc, ns + cc.p[P_FAULT_NS])
            else:
                c[W_SLEPT] += 1
                c[W_EXTRA_NS] += np.int64(ns)
    return r
