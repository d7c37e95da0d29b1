"""Reported figures are evidence: every cost entry moves some figure, reservation latency is
measured per call, the per-tag-page metadata record holds the backend's whole state."""

from __future__ import annotations

import tomllib
from dataclasses import replace

import numpy as np
import pytest

from tagcache.costs import SOURCES, CostTable
from tagcache.engine.cleancache import TAG_PAGE_RECORD
from tagcache.experiment import run_scenario
from tagcache.scenario import parse_scenario

SMALL = """
name = "small"
seed = 5
[machine]
memory = "64MiB"
anon = "44MiB"
min_free = "1MiB"
alloc_chunk = "64KiB"
[page_cache]
read_ahead = "128KiB"
max_folio_order = 4
[designs]
backends = ["cleancache", "cma"]
policies = ["whole", "split"]
[designs.cma]
pin_rate = 0.5
[tagged]
shares = [0.2]
process_size = "4MiB"
churn_events = 80
[files]
count = 32
mean_size = "1MiB"
large_folio_share = 0.8
[workload]
events = 800
read_size = "64KiB"
mix = { zipf = 0.75, scan = 0.05, loop = 0.05, write = 0.1, truncate = 0.02, mmap = 0.03 }
"""


def small(costs: CostTable | None = None):
    scn = parse_scenario(tomllib.loads(SMALL), "<small>")
    if costs is not None:
        scn = replace(scn, machine=replace(scn.machine, costs=costs))
    return scn


def _flat(obj, prefix="") -> dict[str, float]:
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out |= _flat(v, f"{prefix}{k}.")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out |= _flat(v, f"{prefix}{i}.")
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        out[prefix[:-1]] = float(obj)
    return out


@pytest.fixture(scope="module")
def base():
    exp = run_scenario(small())
    return _flat([r.to_json() for r in exp.results])


def _without_perf(flat: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in flat.items() if ".perf." not in f".{k}"}


def test_the_small_run_exercises_every_cost(base):
    for i in (0, 1):
        assert base[f"{i}.cleancache.stored"] > 0 and base[f"{i}.cleancache.restored"] > 0
        assert base[f"{i}.cleancache.reclaimed"] > 0 and base[f"{i}.io.pages_written"] > 0
        assert base[f"{i}.tag_storage.cmo_pages"] > 0
        assert sum(v for k, v in base.items() if k.startswith(f"{i}.invariants.")) == 0
    # the cma design (run 2) migrates, falls back and waits: its costs move its figures
    assert base["2.tag_storage.migrations"] > 0 and base["2.tag_storage.fallbacks"] > 0
    assert base["2.tag_storage.waits_ns.calls"] > 0


@pytest.mark.parametrize("entry", CostTable.keys())
def test_every_cost_entry_moves_a_figure(base, entry):
    assert entry in SOURCES                           # and says where its default came from
    costs = replace(CostTable(), **{entry: getattr(CostTable(), entry) * 3 + 7})
    exp = run_scenario(small(costs))
    moved = {k for k, v in _without_perf(_flat([r.to_json() for r in exp.results])).items()
             if base.get(k) != v}
    assert moved, f"cost entry {entry} changes no reported figure"
    # Costs change modelled times only, never what the model did.
    assert all(("_ns" in k) or ("_cdf" in k) or k.endswith((".p50", ".p99", ".p99.9", ".max"))
               for k in moved), sorted(moved)


def test_claim_latency_is_measured_and_differs_by_folio_policy(base):
    whole = {k[2:]: v for k, v in base.items() if k.startswith("0.")}
    split = {k[2:]: v for k, v in base.items() if k.startswith("1.")}
    lat = "tag_storage.reservation_latency_ns.claiming."
    assert whole[lat + "p50"] > 0 and split[lat + "p50"] > 0
    assert whole[lat + "max"] > split[lat + "max"]           # a whole folio drops more pages
    drops_w = {k: v for k, v in whole.items() if k.startswith("tag_storage.dropped_per_claim")}
    drops_s = {k: v for k, v in split.items() if k.startswith("tag_storage.dropped_per_claim")}
    assert drops_w != drops_s
    # split drops at most the block's own tag page; whole drops whole folios
    assert sum(v for k, v in drops_s.items() if not k.endswith((".0", ".1"))) == 0
    assert sum(v for k, v in drops_w.items() if not k.endswith((".0", ".1"))) > 0


def test_net_time_saved_is_avoided_io_less_cleancache_cost(base):
    for i in (0, 1):
        io = {k.split(".", 2)[2]: v for k, v in base.items() if k.startswith(f"{i}.io.")}
        assert io["net_time_saved_ns"] == pytest.approx(io["io_time_saved_ns"]
                                                        - io["cleancache_cost_ns"])
        assert io["cleancache_cost_ns"] > 0


def test_metadata_record_is_twelve_bytes_and_holds_the_backend_state():
    assert TAG_PAGE_RECORD.itemsize == 12
    scn = small()
    exp = run_scenario(scn)
    meta = {r.backend: r.tag_storage["metadata_bytes_per_tag_page"] for r in exp.results}
    assert meta == {"cleancache": 12.0, "cma": 64.0}     # cma: lent pages need a struct page
    assert all(r.tag_storage["simulator_bytes_per_tag_page"] > 12 for r in exp.results)


LINK_NONE = (1 << 24) - 1      # a 24-bit link with no page behind it


def pack_records(cc, tagged_per_tag_page: np.ndarray) -> np.ndarray:
    """The backend's live state (engine/tagstore.py's arrays of the cleancache state ``cc``)
    as TAG_PAGE_RECORD records (``tagged_per_tag_page``: the tagged data pages each tag page
    covers, from the memmap)."""
    state, order, slot = (np.asarray(a) for a in (cc.tp_state, cc.tp_order, cc.tp_slot))
    t = len(state)
    assert t < LINK_NONE - 1, f"{t} tag pages do not fit 24-bit links"
    rec = np.zeros(t, TAG_PAGE_RECORD)
    rec["state_order"] = state | (order << 2)
    for name, arr in (("prev", np.asarray(cc.tp_prev)[:t]), ("next", np.asarray(cc.tp_next)[:t])):
        v = np.where(arr < 0, LINK_NONE, np.where(arr == t, LINK_NONE - 1, arr))
        v = v.astype(np.uint32)
        rec[name] = np.stack([v & 0xFF, (v >> 8) & 0xFF, v >> 16], axis=1)
    rec["tagged"] = tagged_per_tag_page
    rec["key"] = np.where(slot < 0, 0xFFFFFFFF, slot).astype(np.uint32)
    return rec


def unpack_records(rec: np.ndarray) -> dict[str, np.ndarray]:
    """Inverse of :func:`pack_records`: state, order, prev, next (the list's head and tail
    link to -2), tagged and slot, as arrays."""
    def link(name: str) -> np.ndarray:
        b = rec[name].astype(np.int64)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        return np.where(v == LINK_NONE, -1, np.where(v == LINK_NONE - 1, -2, v))
    key = rec["key"].astype(np.int64)
    return {"state": rec["state_order"] & 3, "order": rec["state_order"] >> 2,
            "prev": link("prev"), "next": link("next"), "tagged": rec["tagged"],
            "slot": np.where(key == 0xFFFFFFFF, -1, key)}


def test_records_round_trip_a_live_backend(make_system):
    """Every field a transition reads (engine/cleancache.py TAG_PAGE_RECORD) fits the
    12-byte record: a live backend's state packed and unpacked comes back unchanged."""
    s = make_system(limit=16, policy="split")
    for i in range(0, 60, 3):
        s.pc.read(0, i, 2)
    s.pc.read(1, 0, 32)
    s.map_tagged(s.S + 32 * np.arange(3))
    be = s.backend
    assert be.nr_cached > 4
    cc = s.cc.state
    t = len(be.tp_state)
    tagged = np.zeros(t, np.int64)
    tagged[:3] = 1
    u = unpack_records(pack_records(cc, tagged))
    assert (u["state"] == be.tp_state).all() and (u["order"] == np.asarray(cc.tp_order)).all()
    assert (u["slot"] == np.asarray(cc.tp_slot)).all() and (u["tagged"] == tagged).all()
    for name, arr in (("prev", np.asarray(cc.tp_prev)[:t]), ("next", np.asarray(cc.tp_next)[:t])):
        assert (u[name] == np.where(arr == t, -2, arr)).all()


def test_machine_reports_no_backend_metadata_for_idle():
    scn = small()
    scn = replace(scn, designs=[replace(scn.designs[0], backend="idle")])
    exp = run_scenario(scn)
    assert all(r.tag_storage["metadata_bytes_per_tag_page"] == 0 for r in exp.results)


def test_achieved_share_is_reported_and_a_shortfall_warned(capsys):
    from tagcache.cli import _finish
    from tagcache.report import share_warnings

    exp = run_scenario(small())
    for r in exp.results:
        ach = r.tag_storage["achieved_tagged_share"]
        assert ach["peak"] >= ach["mean"] >= 0.9 * r.tagged_share      # really tagged
    assert share_warnings(exp) == []
    short = exp.results[0]
    short.tag_storage["achieved_tagged_share"]["mean"] = 0.85 * short.tagged_share
    (w,) = share_warnings(exp)
    assert "20% tagged" in w and "17.00%" in w
    _finish(exp, None)
    assert "warning: cleancache, whole folio at 20% tagged" in capsys.readouterr().err
