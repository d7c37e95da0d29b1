"""Every design's backend, registered: one module each, one line here.

A design is a backend and its parameters (backends/base.py: the contract). The position in
:data:`REGISTRY` is the backend's ``kind`` in the compiled state; the cleancache frontend
(engine/cleancache.py) reaches each backend's compiled hook through :func:`backend_call`,
which numba compiles into one direct call per registered backend (an if-chain on ``kind``
generated from the registry). The frontend calls the tag-page store's functions directly for
a backend whose hook is that store's own (cleancache, gcma: engine/cleancache.py ``direct``):
through the dispatch a store and a restore took 98 ns, directly 60 (58 before the contract).
``idle`` comes first: kind 0, no backend at all.
"""

from __future__ import annotations

from numba.extending import overload

from tagcache.backends import claim, cleancache, cma, gcma, idle, oracle, tmem, zswap

REGISTRY = (
    idle,
    cleancache,
    gcma,
    cma,
    claim,
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


def backend_call(cc, op, a, b):
    """``hook(cc, op, a, b)`` of the backend registered at ``cc.kind`` (this body runs only
    uncompiled, under NUMBA_DISABLE_JIT; compiled code calls :func:`_backend_call`'s)."""
    return REGISTRY[cc.kind].hook(cc, op, a, b)


@overload(backend_call)
def _backend_call(cc, op, a, b):
    """The compiled dispatch: ``if cc.kind == k: return hook_k(...)`` for every registered
    backend, each hook a direct call (numba types a global dispatcher as itself)."""
    lines = ["def dispatch(cc, op, a, b):", "    k = cc.kind"]
    for k in range(len(REGISTRY)):
        lines += [f"    if k == {k}:", f"        return hook{k}(cc, op, a, b)"]
    lines.append("    return 0")
    scope = {f"hook{k}": m.hook for k, m in enumerate(REGISTRY)}
    exec("\n".join(lines), scope)
    return scope["dispatch"]
