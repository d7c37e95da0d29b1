"""A scenario's full set of runs: every design at every tagged share, on the same file work.

The library entry point a notebook calls: ``run_scenario(load_scenario())``. Each run is
independent (fresh machine, same seeded trace per share), so the list could be farmed out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from tagcache.replay import RunResult, replay
from tagcache.scenario import Scenario
from tagcache.workloads.events import Trace
from tagcache.workloads.generators import generate


@dataclass
class Experiment:
    scenario: Scenario
    results: list[RunResult]
    wall_s: float

    @property
    def events(self) -> int:
        return sum(r.perf["events"] for r in self.results)

    def to_json(self) -> dict:
        return {
            "scenario": self.scenario.to_json(),
            "results": [r.to_json() for r in self.results],
            "perf": {"events": self.events, "wall_s": self.wall_s,
                     "events_per_s": self.events / self.wall_s if self.wall_s else 0.0},
        }


def scenario_trace(scn: Scenario, share: float) -> Trace:
    """The generated trace of ``scn`` at one tagged share."""
    tw = replace(scn.tagged, share=share)
    return generate(scn.files, tw, scn.machine.layout.data_pages, scn.seed,
                    name=f"{scn.name}@{share:g}")


def plan_size(scn: Scenario, traces: dict[float, Trace]) -> int:
    return sum(len(traces[s]) for s in scn.shares) * len(scn.designs)


def run_scenario(scn: Scenario, *, check: bool = True,
                 progress: Callable[[int], None] | None = None,
                 traces: dict[float, Trace] | None = None) -> Experiment:
    """Replay every design at every share; ``progress(n)`` hears of events as they go."""
    t0 = time.perf_counter()
    traces = traces or {s: scenario_trace(scn, s) for s in scn.shares}
    results = []
    for share in scn.shares:
        cfg = scn.machine_for(share)
        for design in scn.designs:
            results.append(replay(cfg, design, traces[share], tagged_share=share, check=check,
                                  progress=progress))
    return Experiment(scn, results, time.perf_counter() - t0)
