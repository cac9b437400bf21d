"""Scenarios: a workload, one or more systems (networks of simulated agents) to run it on, and
the faults to inject into each. YAML loaded once into validated models.

name: fault-storm
time_scale: 0.1          # simulated latency x 0.1: a 2 s model call takes 0.2 s
seed: 3
concurrency: 4           # tasks in flight at once
workload: {kind: multipart, tasks: 12, parts: 3, domains: [math, geography, history]}
systems:
  - name: storm
    network: {...}       # a network description (as for `rede run`), or a path to one
    faults:
      - {kind: kill, agent: math-a, at_call: 2}            # crash while it holds its 2nd call
      - {kind: slow, agent: geo, factor: 5, at_s: 0.5, for_s: 1.0}
      - {kind: drop, topic: "rede.task.history.*", rate: 0.5, at_task: 3, for_tasks: 4}
      - {kind: delay, agent: synth, kinds: [result], delay_s: 0.05}
      - {kind: corrupt, agent: geo-b, rate: 1.0, at_task: 6}
      - {kind: partition, agents: [history-a], at_task: 8, for_tasks: 2}

A fault starts at one trigger (``at_s``: seconds after the workload starts; ``at_task``:
when the task with that index is submitted; ``at_call``: when its agent's model receives
that call, counted from 1), by default when the workload starts; it lasts ``for_s`` seconds
or ``for_tasks`` task submissions, by default to the end. ``kill`` and ``restart`` are
instants.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rede.config import NAME, NetworkConfig, read_yaml, validate_mapping
from rede.errors import ConfigError
from rede.protocol.messages import Kind
from rede.sim.workload import WorkloadConfig

FaultKind = Literal["kill", "restart", "slow", "corrupt", "drop", "delay", "partition"]
AGENT_FAULTS = {"kill", "restart", "slow", "corrupt"}
MODEL_FAULTS = {"slow", "corrupt"}
INSTANT_FAULTS = {"kill", "restart"}


class FaultConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: FaultKind
    agent: str | None = Field(None, pattern=NAME)
    """kill, restart, slow, corrupt: the agent (every local replica). drop, delay: only
    envelopes this agent sends."""
    agents: list[str] = Field(default_factory=list)
    """partition: the group cut off from the rest of the network."""
    topic: str | None = None
    """drop, delay: a glob over topic names, e.g. ``rede.task.math.*`` or ``rede.reply.*``."""
    kinds: list[Kind] = Field(default_factory=list)
    """drop, delay: envelope kinds (``task``, ``result``, ``heartbeat``, ...)."""
    rate: float = Field(1.0, ge=0, le=1)
    """drop, delay, corrupt: the share of matching messages or outputs affected."""
    delay_s: float = Field(0.1, ge=0)
    factor: float = Field(5.0, ge=1)
    """slow: model latency multiplied by this."""
    at_s: float | None = Field(None, ge=0)
    at_task: int | None = Field(None, ge=0)
    at_call: int | None = Field(None, ge=1)
    for_s: float | None = Field(None, gt=0)
    for_tasks: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _shape(self) -> FaultConfig:
        triggers = [t for t in (self.at_s, self.at_task, self.at_call) if t is not None]
        if len(triggers) > 1:
            raise ValueError(f"{self.kind}: give one of at_s, at_task, at_call")
        if not triggers:
            self.at_task = 0
        if self.kind in AGENT_FAULTS and self.agent is None:
            raise ValueError(f"a {self.kind} fault needs 'agent'")
        if self.kind == "partition" and not self.agents:
            raise ValueError("a partition fault needs 'agents' (the group cut off)")
        if self.at_call is not None and self.agent is None:
            raise ValueError("at_call counts one agent's model calls: give 'agent'")
        if self.kind in INSTANT_FAULTS and (self.for_s or self.for_tasks):
            raise ValueError(f"a {self.kind} fault is an instant; it takes no for_s/for_tasks")
        if self.for_s is not None and self.for_tasks is not None:
            raise ValueError(f"{self.kind}: give one of for_s, for_tasks")
        return self

    @property
    def target(self) -> str:
        if self.kind == "partition":
            return "{" + ", ".join(self.agents) + "}"
        bits = [b for b in (self.agent, self.topic, ",".join(self.kinds)) if b]
        return " ".join(bits) or "all traffic"

    def describe(self) -> str:
        """What the fault does, in a few words."""
        return {
            "kill": "crash, no goodbye",
            "restart": "fresh replica",
            "slow": f"latency x{self.factor:g}",
            "corrupt": f"garble {self.rate:.0%} of outputs",
            "drop": f"drop {self.rate:.0%}",
            "delay": f"delay {self.rate:.0%} by {self.delay_s:g}s",
            "partition": "cut off",
        }[self.kind]

    def trigger(self) -> str:
        """When it starts and how long it lasts."""
        if self.at_call is not None:
            when = f"call #{self.at_call}"
        elif self.at_s is not None:
            when = f"{self.at_s:g}s"
        else:
            when = f"task #{self.at_task}"
        if self.for_s is not None:
            when += f", {self.for_s:g}s"
        elif self.for_tasks is not None:
            when += f", {self.for_tasks} tasks"
        return when


class SystemConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    network: dict[str, Any] | str
    """A network description, or a path to a network YAML (relative to the scenario file)."""
    faults: list[FaultConfig] = Field(default_factory=list)


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "scenario"
    description: str = ""
    time_scale: float = Field(0.1, ge=0)
    """Simulated model latency is multiplied by this (0: instant, 1: as the profile says)."""
    seed: int = 0
    concurrency: int = Field(4, ge=1, le=256)
    workload: WorkloadConfig = Field(default_factory=WorkloadConfig)
    systems: list[SystemConfig] = Field(min_length=1)
    base_dir: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _unique(self) -> Scenario:
        names = [s.name for s in self.systems]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"system names must be unique; repeated: {', '.join(dupes)}")
        return self

    def network_config(self, system: SystemConfig) -> NetworkConfig:
        where = f"scenario {self.name!r}, system {system.name!r}"
        if isinstance(system.network, str):
            path = Path(system.network)
            if not path.is_absolute() and self.base_dir is not None:
                path = self.base_dir / path
            return NetworkConfig.from_yaml(path)
        return NetworkConfig.from_dict(system.network, source=where, base_dir=self.base_dir)

    @classmethod
    def from_dict(
        cls, data: Any, *, source: str = "scenario", base_dir: Path | None = None
    ) -> Scenario:
        scenario = validate_mapping(cls, data, source=source, what="a scenario", key="systems")
        scenario.base_dir = base_dir
        for system in scenario.systems:  # fail early, naming the system
            scenario.network_config(system)
        return scenario

    @classmethod
    def from_yaml(cls, path: str | Path) -> Scenario:
        p = Path(path)
        return cls.from_dict(read_yaml(p, "scenario"), source=str(p), base_dir=p.parent)


def bundled_scenarios() -> dict[str, Path]:
    """The scenarios shipped with Rede, by name (file stem)."""
    folder = resources.files("rede") / "scenarios"
    return {
        Path(entry.name).stem: Path(str(entry))
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".yaml")
    }


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A scenario file, or the name of a bundled one (``rede sim --list``)."""
    path = Path(name_or_path)
    if path.is_file():
        return Scenario.from_yaml(path)
    bundled = bundled_scenarios()
    if str(name_or_path) in bundled:
        return Scenario.from_yaml(bundled[str(name_or_path)])
    raise ConfigError(
        f"no scenario file {str(name_or_path)!r} and no bundled scenario of that name; "
        f"bundled: {', '.join(bundled) or 'none'}"
    )
