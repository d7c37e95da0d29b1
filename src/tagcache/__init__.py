"""tagcache: an executable model of arm64 MTE tag storage reused as a cleancache backend.

Library use, the same path the CLI takes::

    from tagcache import load_scenario, run_scenario
    exp = run_scenario(load_scenario())          # the embedded default scenario
    exp.to_json()["results"][0]["cleancache"]
"""

from tagcache.experiment import Experiment, run_scenario, scenario_trace
from tagcache.replay import Design, MachineConfig, RunResult, replay
from tagcache.scenario import Scenario, load_scenario

__all__ = ["Design", "Experiment", "MachineConfig", "RunResult", "Scenario", "load_scenario",
           "replay", "run_scenario", "scenario_trace"]
__version__ = "0.1.0"
