"""``tmem``: a virtio-tmem-like region as the cleancache backend: device memory the guest
does not map as page frames (no memmap), whose size a hypervisor target sets over time.

Not tag storage: the tags keep their static carve-out (as under ``idle``), and this region,
as large as the tag storage at most (``size``), keeps clean evicted folios behind the 2011
frontend (exclusive restore). The host's target follows a schedule in the scenario: the whole
region until ``shrink_at`` (a fraction of the run's events), ``shrink_to`` of it until
``grow_at``, the whole again after. Shrinking drops clean copies, highest pages first
(counted as ``reclaimed``: the owner took the memory back); a page the host holds back is in
state TAGS of the store's diagram ("not granted"), never holding tags. Simplified: the target
moves at the run's samples (machine.SERIES_POINTS a run) and at anonymous-memory events, not
at the exact event the schedule names; a real device would also move it gradually.
"""

from __future__ import annotations

from numba import njit

from tagcache.backends.base import OP_RELEASE, OP_RESERVE, OP_TICK, BackendSpec, Param
from tagcache.engine.choices import REPLACEMENTS
from tagcache.engine.tagstore import (
    NR_CACHED,
    NR_FREE,
    RECLAIMED,
    TP_CACHE,
    TP_FREE,
    TP_TAGS,
    _drop_page,
    tagstore_hook,
    tp_set_state,
)

P_SIZE, P_SHRINK_TO, P_SHRINK_AT, P_GROW_AT = range(4)


def _setup(values: dict, layout, costs, seed: int) -> dict:
    return {"p": [values["size"], values["shrink_to"], values["shrink_at"],
                  values["grow_at"]]}


SPEC = BackendSpec(
    name="tmem",
    summary="a hypervisor-sized device region (no memmap) as cleancache; tags keep the "
            "static carve-out",
    params=(
        Param("size", 1.0, "the region at its largest, as a share of the tag storage",
              lo=0.0, hi=1.0),
        Param("shrink_to", 0.25, "the host's target while shrunk, a share of size",
              lo=0.0, hi=1.0),
        Param("shrink_at", 0.5, "when the host shrinks it, a share of the run's events",
              lo=0.0, hi=1.0),
        Param("grow_at", 0.75, "when the host gives it back, a share of the run's events",
              lo=0.0, hi=1.0),
        Param("replacement", "fifo", "which stored folio makes room for a new one",
              choices=REPLACEMENTS),
    ),
    label=lambda p: (f"tmem ({100 * p['size']:g}% of tag storage, "
                     f"{100 * p['shrink_to']:g}% from {100 * p['shrink_at']:g}% to "
                     f"{100 * p['grow_at']:g}% of the run)"),
    on_tag_storage=False,
    timed=True,
    oracle_bounded=False,               # another memory, another size over time
    setup=_setup,
)


@njit(cache=True)
def _target(cc, event, total):
    p = cc.p
    t = len(cc.tp_state)
    x = event / max(1, total)
    share = p[P_SHRINK_TO] if p[P_SHRINK_AT] <= x < p[P_GROW_AT] else 1.0
    return int(t * p[P_SIZE] * share)


@njit(cache=True)
def _resize(cc, target):
    """Pages [0, target) granted (FREE or CACHE), the rest held back (TAGS)."""
    c = cc.c
    t = len(cc.tp_state)
    for tp in range(t - 1, target - 1, -1):
        if c[NR_FREE] + c[NR_CACHED] <= target:
            break
        state = cc.tp_state[tp]
        if state == TP_CACHE:
            _drop_page(cc, tp, TP_TAGS)
            c[RECLAIMED] += 1
        elif state == TP_FREE:
            tp_set_state(cc, tp, TP_TAGS)
    for tp in range(min(target, t)):
        if cc.tp_state[tp] == TP_TAGS:
            tp_set_state(cc, tp, TP_FREE)


@njit(cache=True)
def hook(cc, op, a, b):
    if op == OP_TICK:
        _resize(cc, _target(cc, a, b))
        return 0
    if op == OP_RESERVE or op == OP_RELEASE:
        return 0                        # not tag storage: tags never claim it
    return tagstore_hook(cc, op, a, b)
