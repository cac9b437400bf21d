"""A whole network description, checked across its sections."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from rede.config._base import META_CAPABILITIES, _Conf, misspelt, read_yaml, validate_mapping
from rede.config.parts import (
    AgentConfig,
    BusConfig,
    DurableConfig,
    HumanConfig,
    LimitsConfig,
    ModelConfig,
    RoutingConfig,
    SpawnConfig,
    StepFailureConfig,
)


class NetworkConfig(_Conf):
    name: str = "network"
    description: str = ""
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    agents: list[AgentConfig] = Field(min_length=1)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    spawn: SpawnConfig | None = None
    bus: BusConfig = Field(default_factory=BusConfig)
    human: HumanConfig = Field(default_factory=HumanConfig)
    durable: DurableConfig = Field(default_factory=DurableConfig)
    on_step_failure: StepFailureConfig = Field(default_factory=StepFailureConfig)
    heartbeat_s: float = Field(2.0, gt=0)
    agent_ttl_s: float = Field(10.0, gt=0)
    base_dir: Path | None = Field(None, exclude=True)

    @field_validator("on_step_failure", mode="before")
    @classmethod
    def _policy_alone(cls, value: Any) -> Any:
        return {"policy": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _references(self) -> NetworkConfig:
        names = [a.name for a in self.agents]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"agent names must be unique; repeated: {', '.join(sorted(dupes))}")
        for agent in self.agents:
            if agent.model is not None and agent.model not in self.models:
                close = difflib.get_close_matches(agent.model, list(self.models), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"agents.{agent.name}.model: {agent.model!r} is not in models "
                    f"(known: {', '.join(sorted(self.models)) or 'none'}){hint}"
                )
        return self

    @model_validator(mode="after")
    def _spawn_and_manager(self) -> NetworkConfig:
        names = {a.name for a in self.agents}
        unknown = set(self.spawn.templates) - names if self.spawn else set()
        if unknown:
            raise ValueError(
                f"spawn.templates names unknown agent(s) {', '.join(sorted(unknown))}; "
                f"agents: {', '.join(sorted(names))}"
            )
        for capability, agreement in self.routing.agreement.items():
            for tier in agreement.tiers:
                for name in tier.agents:
                    agent = next((a for a in self.agents if a.name == name), None)
                    if agent is None:
                        raise ValueError(
                            f"routing.agreement.{capability} names unknown agent {name!r}; "
                            f"agents: {', '.join(sorted(names))}"
                        )
                    if capability not in agent.capabilities and not agent.remote:
                        raise ValueError(
                            f"routing.agreement.{capability} names agent {name!r}, which does "
                            f"not serve {capability!r} (it serves {', '.join(agent.capabilities)})"
                        )
        failure = self.on_step_failure
        unknown = sorted({*failure.per_capability, *failure.required} - self.capabilities)
        if unknown:
            raise ValueError(
                f"on_step_failure names capability {', '.join(map(repr, unknown))}, which no "
                f"agent serves; agents serve: {', '.join(sorted(self.capabilities))}"
            )
        if self.routing.manager is not None and self.routing.manager not in names:
            raise ValueError(
                f"routing.manager {self.routing.manager!r} is not an agent; "
                f"agents: {', '.join(sorted(names))}"
            )
        return self

    @model_validator(mode="after")
    def _capabilities_make_sense(self) -> NetworkConfig:
        for cap in sorted(self.capabilities):
            known = misspelt(cap)
            if known is not None:
                raise ValueError(
                    f"capability {cap!r} looks like a misspelling of {known!r} (the "
                    f"orchestrator and the bundled prompts know {known!r}); rename it"
                )
        if self.capabilities <= META_CAPABILITIES and not any(a.remote for a in self.agents):
            raise ValueError(
                f"the agents serve only {', '.join(sorted(self.capabilities))}: no agent can "
                "do a step; add one with a capability such as write, research or answer"
            )
        return self

    @property
    def capabilities(self) -> set[str]:
        return {c for a in self.agents for c in a.capabilities}

    @classmethod
    def from_yaml(cls, path: str | Path) -> NetworkConfig:
        p = Path(path)
        return cls.from_dict(read_yaml(p, "network"), source=str(p), base_dir=p.parent)

    @classmethod
    def from_dict(
        cls, data: Any, *, source: str = "network", base_dir: Path | None = None
    ) -> NetworkConfig:
        conf = validate_mapping(cls, data, source=source, what="a network", key="agents")
        conf.base_dir = base_dir
        return conf
