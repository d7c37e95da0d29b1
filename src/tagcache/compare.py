"""Every design side by side on the same work: the library behind ``tagcache compare``.

:func:`comparison_scenario` gives a scenario every registered backend (or the ones asked for)
at each parameter value its spec names for comparison (backends/base.py ``Param.compare``),
unless the scenario's ``[designs.<backend>]`` sets it; the runs are the experiment's
(experiment.py: like for like, the same trace per share, baselines at 0% tagged).
:class:`Comparison` turns the results into one row per design and share, with the oracle's
gap (the pages the oracle restored beyond the row's, at the same share, per access: the share
of accesses a better policy could still serve from cleancache) and the checks the design
space must pass: invariants held, what each backend declares (a backend that declares it never
sleeps or fails did not), and the oracle bound (no cleancache that sees the oracle's free tag
pages restored more than it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from tagcache.backends import NAMES
from tagcache.backends import spec as backend_spec
from tagcache.experiment import Experiment
from tagcache.replay import RunResult
from tagcache.scenario import Scenario


def comparison_scenario(scn: Scenario, backends: list[str] | None = None) -> Scenario:
    """``scn`` with the designs of ``backends`` (default: every registered one) at their
    compare values (the scenario's own values where it gives them)."""
    return replace(scn, designs=scn.designs_of(list(backends or NAMES), compare=True))


def _bounded(r: RunResult) -> bool:
    """A design the oracle bounds: it keeps copies in the same free tag pages the oracle sees,
    one page to a tag page (not the oracle itself; not tmem, another memory, nor zswap, whose
    compression fits more pages in a tag page)."""
    spec = backend_spec(r.backend)
    return spec.holds_cache and not spec.offline and spec.oracle_bounded


def _gapped(r: RunResult) -> bool:
    """A design with a gap to the oracle: any that keeps copies (tmem's and zswap's can be
    negative: they are not bounded by it)."""
    spec = backend_spec(r.backend)
    return spec.holds_cache and not spec.offline


def _where(r: RunResult) -> tuple[float, str]:
    """A run's share and where its tagged pages went."""
    return r.tagged_share, r.policy.get("alloc", "")


@dataclass
class Comparison:
    """The rows of a comparison and the checks on them."""

    experiment: Experiment

    def results(self) -> list[RunResult]:
        """Every run once, the 0%-tagged baselines included (they are the share-0 points)."""
        exp = self.experiment
        extra = [b for b in exp.baselines if not any(b is r for r in exp.results)]
        return sorted(exp.results + extra, key=lambda r: r.tagged_share)

    def _oracle(self) -> dict[tuple[float, str], RunResult]:
        """The oracle's run per share and tagged-page placement: a row is held to the
        oracle that saw the same tag pages freed and claimed, so the same placement."""
        return {_where(r): r for r in self.results() if backend_spec(r.backend).offline}

    def rows(self) -> list[dict[str, Any]]:
        """One row per design and share: the figures of the table, the report and JSON."""
        oracle = self._oracle()
        out = []
        for r in self.results():
            ts, pc = r.tag_storage, r.page_cache
            lat = ts["reservation_latency_ns"]["claiming"]
            o = oracle.get(_where(r))
            gap = ((o.cleancache["restored"] - r.cleancache["restored"]) / pc["accesses"]
                   if o is not None and _gapped(r) and pc["accesses"] else None)
            out.append({
                "key": r.design, "label": r.label, "design": r.backend,
                "tagged_share": r.tagged_share,
                "effective_hit_ratio": pc["effective_hit_ratio"],
                "hit_ratio": pc["hit_ratio"],
                "pages_read": r.io["pages_read"],
                "restored": r.cleancache["restored"],
                "recovered_avg_pages": ts["recovered_pages_avg"],
                "fallbacks": ts["fallbacks"],
                "failures": ts["reservation_failures"],
                "migrations": ts["migrations"],
                "claims_slept": ts["claims_slept"],
                "violations": sum(r.invariants.values()) if r.invariants else None,
                "latency_ns": {k: lat[k] for k in ("p50", "p99", "max")},
                "waits_ns": {k: ts["waits_ns"][k] for k in ("calls", "p50", "p99", "max")},
                "latency_cdf": ts["reservation_latency_cdf"],
                "recovered_series": {"event": r.series.get("event", []),
                                     "pages": r.series.get("recovered_pages", [])},
                "oracle_gap": gap,
            })
        return out

    def designs(self) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for r in self.results():
            if r.design not in seen:
                seen[r.design] = {"key": r.design, "design": r.backend, "label": r.label,
                                  "properties": backend_spec(r.backend).properties()}
        return list(seen.values())

    def problems(self) -> list[str]:
        """What the design space must never show, one sentence each: an invariant
        violation, a backend that slept or failed though it declares it never does, a
        cleancache row above the oracle bound."""
        out = []
        oracle = self._oracle()
        for r in self.results():
            spec = backend_spec(r.backend)
            ts = r.tag_storage
            viol = sum(r.invariants.values()) if r.invariants else 0
            where = f"{r.label} at {100 * r.tagged_share:g}% tagged"
            if viol:
                out.append(f"{where}: {viol} invariant violations")
            if not spec.can_fail and ts["reservation_failures"]:
                out.append(f"{where}: {ts['reservation_failures']} reservation failures")
            if not spec.may_sleep and ts["claims_slept"]:
                out.append(f"{where}: {ts['claims_slept']} reservations slept")
            o = oracle.get(_where(r))
            if o is not None and _bounded(r) and (
                    r.cleancache["restored"] > o.cleancache["restored"]):
                out.append(f"{where}: restored {r.cleancache['restored']:,} pages, above "
                           f"the oracle's {o.cleancache['restored']:,}")
        return out

    def to_json(self) -> dict[str, Any]:
        exp = self.experiment
        return {"title": f"tagcache compare: {exp.scenario.name}",
                "note": exp.note or _scenario_note(exp),
                "designs": self.designs(), "rows": self.rows(),
                "problems": self.problems(), "experiment": exp.to_json()}


def _scenario_note(exp: Experiment) -> str:
    scn = exp.scenario
    m = scn.machine.layout
    return (f"scenario {scn.name}: {m.data_pages * 4096 >> 20} MiB data memory, "
            f"{m.nr_tag_pages:,} tag pages; {exp.events:,} events replayed in "
            f"{exp.wall_s:.1f} s")
