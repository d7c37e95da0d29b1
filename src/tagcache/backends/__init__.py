"""Every design's backend, registered: one module each, one line here.

A design is a backend and its parameters (backends/base.py: the contract). The position in
:data:`REGISTRY` is the backend's ``kind`` in the compiled state; the cleancache frontend
(engine/cleancache.py) reaches each backend's compiled hook through :data:`HOOKS` (numba
compiles the dispatch over this tuple into direct calls). ``idle`` comes first: kind 0, no
backend at all.
"""

from __future__ import annotations

from tagcache.backends import cleancache, cma, gcma, idle, oracle, tmem, zswap

REGISTRY = (
    idle,
    cleancache,
    gcma,
    cma,
    tmem,
    zswap,
    oracle,
)

SPECS = tuple(m.SPEC for m in REGISTRY)
HOOKS = tuple((k, m.hook) for k, m in enumerate(REGISTRY))
BY_NAME = {s.name: s for s in SPECS}
NAMES = tuple(BY_NAME)


def spec(name: str):
    """The BackendSpec registered as ``name`` (KeyError if none)."""
    return BY_NAME[name]
