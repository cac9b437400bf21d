"""The simulation environment: scenarios of simulated agents on the real runtime.

A :class:`Scenario` names a workload (tasks with known answers and ideal decompositions), the
systems to run it on (networks of ``sim`` models) and the faults to inject into each (kill,
restart, slow, corrupt, drop, delay, partition). :func:`run_scenario` runs each system on the
real bus and orchestrator and returns a :class:`SimReport`: accuracy, latency p50/p95, cost,
tokens, messages and bytes per task, latency over the critical path, success under faults,
and decomposition quality against the ideal plan.

    report = await run_scenario(load_scenario("comparison"))
    print(report.system("specialists").metrics.accuracy)

Only the models are simulated, and every report says so.
"""

from rede.sim.buses import BusRule, FaultyBus, MeteredBus
from rede.sim.faults import FaultController, FaultyModel, garble
from rede.sim.metrics import (
    Decomposition,
    SystemMetrics,
    TaskOutcome,
    aggregate,
    decomposition,
    percentile,
    task_outcome,
)
from rede.sim.model import TASK_KEY, AnswerKey, GroundedSimModel
from rede.sim.runner import SIMULATED_NOTE, SimReport, SystemReport, run_scenario, run_system
from rede.sim.scenario import (
    FaultConfig,
    Scenario,
    SystemConfig,
    bundled_scenarios,
    load_scenario,
)
from rede.sim.workload import Part, SimTask, WorkloadConfig, generate, grade

__all__ = [
    "SIMULATED_NOTE",
    "TASK_KEY",
    "AnswerKey",
    "BusRule",
    "Decomposition",
    "FaultConfig",
    "FaultController",
    "FaultyBus",
    "FaultyModel",
    "GroundedSimModel",
    "MeteredBus",
    "Part",
    "Scenario",
    "SimReport",
    "SimTask",
    "SystemConfig",
    "SystemMetrics",
    "SystemReport",
    "TaskOutcome",
    "WorkloadConfig",
    "aggregate",
    "bundled_scenarios",
    "decomposition",
    "garble",
    "generate",
    "grade",
    "load_scenario",
    "percentile",
    "run_scenario",
    "run_system",
    "task_outcome",
]
