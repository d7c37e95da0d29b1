"""The backend contract (backends/base.py): one conformance class every registered backend
passes through one subclass, and the rules each design's declarations imply.

A new backend is one module in src/tagcache/backends/, one line in its REGISTRY and one
subclass here (``backend = "<name>"``); :func:`test_every_backend_has_a_conformance_class`
fails until the subclass exists.
"""

from __future__ import annotations

import numpy as np
import pytest
from _engine import build_system

from tagcache.backends import BY_NAME, HOOKS, NAMES, REGISTRY, SPECS
from tagcache.compare import Comparison, comparison_scenario
from tagcache.engine.cleancache import KINDS, backend_report, held_copies
from tagcache.engine.tagstore import NR_CACHED, TP_TAGS
from tagcache.engine.warm import _tiny
from tagcache.experiment import run_scenario
from tagcache.replay import Design
from tagcache.scenario import parse_scenario
from tagcache.workloads.events import FileTable


def _files(n: int = 2, size: int = 256) -> FileTable:
    return FileTable.build(np.ones(n, np.int64), np.arange(1, n + 1), np.full(n, size))


class BackendConformance:
    """What every registered backend must do; a subclass names the backend."""

    backend: str = ""

    @property
    def spec(self):
        return BY_NAME[self.backend]

    def test_registered(self):
        spec = self.spec
        assert NAMES.index(self.backend) == KINDS[self.backend]
        module = REGISTRY[KINDS[self.backend]]
        assert module.SPEC is spec and HOOKS[KINDS[self.backend]] == (KINDS[self.backend],
                                                                       module.hook)
        for p in spec.params:
            assert p.check(p.default) is None, f"{p.name}'s default fails its own check"
            for v in p.compare or ():
                assert p.check(v) is None
        assert spec.describe(spec.defaults())            # a label for the report
        assert spec.max_store_order >= 0 and spec.metadata_bytes >= 0

    def test_parameters_from_the_scenario(self):
        """``[designs.<name>]`` gives every parameter at its default: the default design;
        an unknown key or a bad value is refused in one line naming it."""
        spec = self.spec
        table = {p.name: p.default for p in spec.params}
        scn = parse_scenario({"designs": {"backends": [self.backend], self.backend: table,
                                          "policies": ["whole"]}}, "t.toml")
        assert scn.designs == [Design.of(self.backend, {"large_folio": "whole"}
                                         if "large_folio" in table else {})]
        with pytest.raises(Exception, match=rf"designs\.{self.backend}\.bogus"):
            parse_scenario({"designs": {self.backend: {"bogus": 1}}}, "t.toml")
        for p in spec.params:
            bad = "nonsense" if p.choices is None else 1.5
            with pytest.raises(Exception, match=rf"designs\.{self.backend}\.{p.name}"):
                parse_scenario({"designs": {self.backend: {p.name: bad}}}, "t.toml")

    def test_runs_clean_and_keeps_its_declarations(self):
        """Every design of the backend (its compare values) on a small scenario with the
        checker on: no violation, and what it declares it never does, it did not do."""
        scn, _ = _tiny()
        scn = comparison_scenario(scn, [self.backend])
        exp = run_scenario(scn, check=True)
        spec = self.spec
        assert exp.results
        for r in exp.results + exp.baselines:
            assert sum(r.invariants.values()) == 0, (r.label, r.violations)
            ts = r.tag_storage
            if not spec.can_fail:
                assert ts["reservation_failures"] == 0
            if not spec.may_sleep:
                assert ts["claims_slept"] == 0 and ts["migrations"] == 0
            if not spec.holds_cache:
                assert r.cleancache["stored"] == 0 and r.cleancache["restored"] == 0
            assert r.label and r.design.startswith(self.backend)
        assert not Comparison(exp).problems()

    def test_store_restore_follow_the_declared_frontend(self):
        """Through the frontend: a clean order-0 folio offered by reclaim is restorable
        (if the backend keeps copies and serves them during the run), exclusively or not as
        declared; a dirty one never is."""
        spec = self.spec
        s = build_system(_files(), backend=self.backend, limit=64)
        a, b = s.slot(0, 3), s.slot(0, 4)
        s.cc.store_folio(a, 0, dirty=False)
        s.cc.store_folio(b, 0, dirty=True)
        assert not s.cc.restore_folio(b, 1)
        serves = spec.holds_cache and not spec.offline
        assert s.cc.restore_folio(a, 1) == serves
        if serves:
            assert s.cc.restore_folio(a, 1) == (not spec.exclusive)
        slots, on = held_copies(s.cc.state)
        assert len(slots) == int(s.cc.state.c[NR_CACHED])
        assert s.violations() == dict.fromkeys(s.violations(), 0)

    def test_claim_leaves_the_block_holding_tags(self):
        """A reservation leaves every tag page (every unit of the backend on it) of its
        block holding tags, whatever the backend held there; a backend whose memory is not
        the tag storage loses nothing to tags. The report names its counters."""
        s = build_system(_files(), backend=self.backend, limit=64)
        for i in range(8):
            s.cc.store_folio(s.slot(0, i), 0, dirty=False)
        cached = int(s.cc.state.c[NR_CACHED])
        assert s.map_tagged([s.S]) == 0
        cc = s.cc.state
        tp = np.asarray(cc.tp_state)
        if len(tp) and self.spec.on_tag_storage:
            first = int(np.asarray(cc.block_first_tag_page)[0])
            n = int(np.asarray(cc.block_tag_pages)[0])
            assert n > 0 and (tp[first:first + n] == TP_TAGS).all()
        elif not self.spec.on_tag_storage:
            assert int(cc.c[NR_CACHED]) == cached
        assert set(backend_report(s.cc.state)) >= {"migrated", "fallbacks", "writebacks"}
        assert sum(s.violations().values()) == 0


class TestIdle(BackendConformance):
    backend = "idle"


class TestCleancache(BackendConformance):
    backend = "cleancache"


class TestGcma(BackendConformance):
    backend = "gcma"


class TestCma(BackendConformance):
    backend = "cma"


class TestClaim(BackendConformance):
    backend = "claim"


class TestTmem(BackendConformance):
    backend = "tmem"


class TestZswap(BackendConformance):
    backend = "zswap"


class TestOracle(BackendConformance):
    backend = "oracle"


def test_every_backend_has_a_conformance_class():
    covered = {c.backend for c in BackendConformance.__subclasses__()}
    assert covered == {s.name for s in SPECS}, "add a subclass for each registered backend"
