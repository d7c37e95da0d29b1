"""``idle``: tag storage reserved by firmware and left unused, as in today's kernels.

The baseline every other design is measured against: no copies kept, no page lent; a
reservation only counts its tag block (engine/tags.py), never drops, sleeps or fails.
"""

from __future__ import annotations

from numba import njit

from tagcache.backends.base import BackendSpec

SPEC = BackendSpec(
    name="idle",
    summary="tag storage reserved and unused (today's kernels)",
    label=lambda p: "idle (static carve-out)",
    holds_cache=False,
    metadata_bytes=0.0,
)


@njit(cache=True)
def hook(cc, op, a, b):
    return 0
