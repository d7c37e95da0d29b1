"""The contract every design's backend keeps: what it declares, and the one compiled hook it
gives the cleancache frontend (engine/cleancache.py).

A backend is one module of this package holding a :class:`BackendSpec` named ``SPEC`` and a
compiled ``hook(cc, op, a, b) -> int``; registering it is one line in backends/__init__.py,
testing it one subclass of tests/test_backend_contract.py's conformance class. The frontend
calls the hook with one of these operations, on the shared state ``cc`` (its per-unit and
per-slot arrays, counters ``c`` and the backend's own counters ``c[BACKEND0 + i]``)::

    op             a        b        returns                   when
    OP_STORE       head     order    1 kept, 0 not             reclaim evicts a clean folio
    OP_PRESENT     first    end      pages with a copy         before a store
    OP_LOOKUP      first    end      pages with a copy         a read looks its folio up
    OP_RESTORE     first    end      pages handed back         exclusive: every page present
    OP_TOUCH       first    end      0                         non-exclusive hit, or re-store
    OP_INVALIDATE  first    end      copies forgotten          write, truncate, partial copy
    OP_RESERVE     block    atomic   0 (work in c[W_*])        tags need the block's tag pages
    OP_RELEASE     block    -        0                         the block's last tagged page freed
    OP_LEND        pages    share    0                         lent tag pages now holding data;
                                                              share: free frames the page
                                                              cache leaves, per 2**20
    OP_TICK        event    total    0                         now at event of total (schedules)

What the frontend does around the hook follows the backend's declarations, not its name:
``exclusive`` (a restore removes the copy, the 2011 semantics) or not (the 2025 GCMA series:
the copy stays and is rotated), ``workingset_only`` (store only folios with PG_workingset),
``max_store_order`` (GCMA stores order-0 folios only). Invariant rule 4 (a reservation never
fails, never sleeps, copies nothing) is held against a backend only where it does not declare
``may_sleep`` or ``can_fail``: a CMA design that sleeps is measured and reported as such.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tagcache.engine.choices import (  # noqa: F401  (the contract's names, defined there)
    OP_INVALIDATE,
    OP_LEND,
    OP_LOOKUP,
    OP_PRESENT,
    OP_RELEASE,
    OP_RESERVE,
    OP_RESTORE,
    OP_STORE,
    OP_TICK,
    OP_TOUCH,
    PLACEMENTS,
    REPLACEMENTS,
)


@dataclass(frozen=True)
class Param:
    """One constructor parameter of a backend, as ``[designs.<name>]`` sets it."""

    name: str
    default: Any
    help: str
    choices: tuple | None = None            # the allowed values, or
    lo: float | None = None                 # a numeric range
    hi: float | None = None
    compare: tuple | None = None            # the values `tagcache compare` runs by default

    def check(self, value: Any) -> str | None:
        """Why ``value`` is not allowed (None if it is)."""
        if self.choices is not None:
            return None if value in self.choices else (
                f"expected one of {', '.join(map(str, self.choices))}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "expected a number"
        if isinstance(self.default, int) and not isinstance(value, int):
            return "expected a whole number"
        if (self.lo is not None and value < self.lo) or (self.hi is not None
                                                          and value > self.hi):
            return f"expected a number in [{self.lo:g}, {self.hi:g}]"
        return None


@dataclass(frozen=True)
class BackendSpec:
    """What a backend declares: its name and label, its parameters, its properties, the
    names of its own counters, and the readers the frontend and the checker use."""

    name: str
    summary: str                             # one line: what the design is
    params: tuple[Param, ...] = ()
    label: Callable[[dict], str] | None = None   # the report's design cell, from the params
    may_sleep: bool = False                  # a reservation may sleep (migrate, write back)
    can_fail: bool = False                   # a reservation may fail (pinned pages)
    persistent: bool = False                 # holds data nowhere else (must write back)
    exclusive: bool = True                   # a restore removes the copy
    workingset_only: bool = False            # stores only folios with PG_workingset
    max_store_order: int = 9                 # largest folio order it stores
    holds_cache: bool = True                 # keeps copies of page-cache pages
    lends_memory: bool = False               # free tag pages serve as ordinary memory
    on_tag_storage: bool = True              # its memory is the tag storage (tags claim it)
    timed: bool = False                      # its size follows a schedule (OP_TICK)
    oracle_bounded: bool = True              # keeps copies in the free tag pages the oracle
                                             # sees, one page each: bounded by its hits
    offline: bool = False                    # its hits are computed after the run (oracle)
    steers_tagged: bool = False              # the allocator places tagged pages under its
                                             # active tag pages (cc.block_active, "pack")
    stats: tuple[str, ...] = ()              # its counters c[BACKEND0 + i], by name
    metadata_bytes: float = 12.0             # what a kernel keeps per tag page (64: memmap)
    setup: Callable[..., dict] | None = field(default=None, compare=False)
    lendable: Callable[[Any], int] | None = field(default=None, compare=False)
                                             # tag pages it may lend now, from its counters
                                             # (default: every one not holding tags)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def axes(self, given: dict[str, list], compare: bool = False) -> list[dict[str, Any]]:
        """Every combination of parameter values: ``given`` (name -> values), else the
        parameter's compare values when ``compare``, else its default."""
        names = [p.name for p in self.params]
        values = []
        for p in self.params:
            if p.name in given:
                values.append(list(given[p.name]))
            elif compare and p.compare:
                values.append(list(p.compare))
            else:
                values.append([p.default])
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]

    def describe(self, params: dict[str, Any]) -> str:
        if self.label is not None:
            return self.label(params)
        extra = ", ".join(f"{k} {v}" for k, v in params.items())
        return self.name + (f" ({extra})" if extra else "")

    def properties(self) -> dict[str, bool]:
        return {"may_sleep": self.may_sleep, "can_fail": self.can_fail,
                "persistent": self.persistent, "exclusive": self.exclusive}
