"""Fault injection on a running :class:`~rede.network.Network`.

The :class:`FaultController` starts and ends the faults of a scenario at their triggers and
records what each did:

- ``kill``: every local replica of an agent crashes without a goodbye (``Network.kill``);
  the tasks it held stay unacknowledged and the registry notices when its heartbeats stop.
- ``restart``: one fresh replica of an agent is started (ends an earlier kill of it).
- ``slow``: the agent's model latency is multiplied (a :class:`FaultyModel` wrapper).
- ``corrupt``: the agent's outputs are garbled before they leave it (values replaced, the
  confidence line kept: confident garbage, the hardest kind).
- ``drop`` / ``delay`` / ``partition``: a :class:`~rede.sim.buses.BusRule` on the
  :class:`~rede.sim.buses.FaultyBus`.

Model faults act through a :class:`FaultyModel` put around every LLM agent's model when the
controller is installed; it also counts calls, for faults triggered ``at_call``.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rede.agents.specialists import LLMSpecialist, SpecialistSpec
from rede.errors import ConfigError
from rede.models._base import ChatModel, ModelRequest, ModelResponse
from rede.network import Network
from rede.sim.buses import BusRule, FaultyBus
from rede.sim.scenario import MODEL_FAULTS, FaultConfig
from rede.sim.workload import ANSWER_LINE

_ROT = str.maketrans(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    "nopqrstuvwxyzabcdefghijklmNOPQRSTUVWXYZABCDEFGHIJKLM5678901234",
)
_CONFIDENCE = re.compile(r"^\s*CONFIDENCE:", re.I)


def garble(text: str) -> str:
    """Corrupt an output so no value in it survives: the values of ``- id: value`` lines (or,
    without such lines, every line but the confidence) get every letter and digit shifted."""
    if ANSWER_LINE.search(text):

        def value(m: re.Match[str]) -> str:
            a, b = m.start(2) - m.start(0), m.end(2) - m.start(0)
            return m.group(0)[:a] + m.group(2).translate(_ROT) + m.group(0)[b:]

        return ANSWER_LINE.sub(value, text)
    return "\n".join(
        line if _CONFIDENCE.match(line) else line.translate(_ROT) for line in text.split("\n")
    )


@dataclass
class FaultRecord:
    """One fault of a scenario: when it acted (seconds since the workload started) and what
    it did (``effects``: dropped, delayed, corrupted, slowed, replicas_killed, ...)."""

    config: FaultConfig
    started_s: float | None = None
    ended_s: float | None = None
    start_task: int = 0
    effects: Counter[str] = field(default_factory=Counter)
    error: str | None = None
    rule: BusRule | None = None

    @property
    def window(self) -> tuple[float, float] | None:
        """When the network was under this fault (None: never triggered, or a restart)."""
        if self.started_s is None or self.config.kind == "restart":
            return None
        return self.started_s, self.ended_s if self.ended_s is not None else math.inf

    def summary(self) -> dict[str, Any]:
        effects = Counter(self.effects)
        if self.rule is not None:
            effects.update({"dropped": self.rule.dropped, "delayed": self.rule.delayed})
        return {
            "kind": self.config.kind,
            "target": self.config.target,
            "what": self.config.describe(),
            "trigger": self.config.trigger(),
            "triggered": self.started_s is not None,
            "started_s": self.started_s,
            "ended_s": self.ended_s,
            "effects": {k: v for k, v in sorted(effects.items()) if v},
            "error": self.error,
        }


class FaultyModel(ChatModel):
    """Wraps one agent's model: counts its calls and applies active slow/corrupt faults."""

    def __init__(self, inner: ChatModel, agent: str, controller: FaultController) -> None:
        self.inner = inner
        self.agent = agent
        self.controller = controller
        self.name = inner.name
        self.source = inner.source
        self.price = inner.price

    def prompt_tokens_bound(self, request: ModelRequest) -> int:
        return self.inner.prompt_tokens_bound(request)

    async def complete(self, request: ModelRequest) -> ModelResponse:
        if await self.controller.before_call(self.agent):
            await asyncio.Future()  # dies holding this call: the kill cancels it
        response = await self.inner.complete(request)
        for rec in self.controller.active(self.agent, "slow"):
            extra = response.usage.latency_s * (rec.config.factor - 1)
            if extra > 0:
                await asyncio.sleep(extra)  # the simulated latency of a slowed model
            response.usage.latency_s *= rec.config.factor
            rec.effects["slowed_calls"] += 1
        for rec in self.controller.active(self.agent, "corrupt"):
            if self.controller.rng.random() < rec.config.rate:
                response.text = garble(response.text)
                rec.effects["corrupted"] += 1
        return response


class FaultController:
    def __init__(
        self, net: Network, bus: FaultyBus, faults: list[FaultConfig], *, seed: int = 0
    ) -> None:
        self.net = net
        self.bus = bus
        self.records = [FaultRecord(f) for f in faults]
        self.rng = random.Random(f"faults|{seed}")
        self._seed = seed
        self._t0: float | None = None
        self._calls: Counter[str] = Counter()
        self._submitted = 0
        self._helpers: set[asyncio.Task[None]] = set()
        validate_faults(net, faults)

    # ------------------------------------------------------------------ lifecycle

    def install(self) -> None:
        """Wrap the model of every local LLM agent (call after the network started)."""
        for runner in self.net.runners:
            self._wrap(runner.spec)

    def _wrap(self, spec: SpecialistSpec) -> None:
        specialist = spec.specialist
        if isinstance(specialist, LLMSpecialist) and not isinstance(specialist.model, FaultyModel):
            specialist.model = FaultyModel(specialist.model, spec.name, self)

    def begin(self) -> None:
        """The workload starts now: the clock of ``at_s`` and of the fault windows."""
        self._t0 = asyncio.get_running_loop().time()
        for rec in self.records:
            if rec.config.at_s is not None:
                self._spawn(self._start_after(rec, rec.config.at_s))

    def now(self) -> float:
        if self._t0 is None:
            return 0.0
        return asyncio.get_running_loop().time() - self._t0

    async def aclose(self) -> None:
        for task in list(self._helpers):
            task.cancel()
        await asyncio.gather(*self._helpers, return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    # ------------------------------------------------------------------ triggers

    async def on_task(self, index: int) -> None:
        """Task ``index`` is about to be submitted: end and start task-triggered faults."""
        self._submitted = index
        for rec in self.records:
            n = rec.config.for_tasks
            if rec.started_s is not None and rec.ended_s is None and n is not None:
                if index >= rec.start_task + n:
                    self._end(rec)
        for rec in self.records:
            if rec.config.at_task == index and rec.started_s is None:
                await self._start(rec)

    async def before_call(self, agent: str) -> bool:
        """An agent's model got a call. True: a kill triggered by it, so the call must hang
        until the kill cancels it (a crash while holding the task)."""
        self._calls[agent] += 1
        dying = False
        for rec in self.records:
            c = rec.config
            if c.at_call == self._calls[agent] and c.agent == agent and rec.started_s is None:
                if c.kind == "kill":
                    rec.started_s = self.now()  # claimed now; the kill runs on its own task
                    self._spawn(self._start(rec))
                    dying = True
                else:
                    await self._start(rec)
        return dying

    async def _start_after(self, rec: FaultRecord, at_s: float) -> None:
        await asyncio.sleep(max(0.0, at_s - self.now()))
        if rec.started_s is None:
            await self._start(rec)

    # ------------------------------------------------------------------ effects

    async def _start(self, rec: FaultRecord) -> None:
        c = rec.config
        if rec.started_s is None:
            rec.started_s = self.now()
        rec.start_task = self._submitted
        if c.kind == "kill":
            assert c.agent is not None
            try:
                rec.effects["replicas_killed"] += await self.net.kill(c.agent)
            except ConfigError as exc:
                rec.error = str(exc)
            return
        if c.kind == "restart":
            assert c.agent is not None
            conf = next(a for a in self.net.config.agents if a.name == c.agent)
            spec = self.net.spec(conf)
            self._wrap(spec)
            self.net.start_runner(spec)
            rec.effects["replicas_started"] += 1
            for other in self.records:
                if other.config.kind == "kill" and other.config.agent == c.agent:
                    if other.started_s is not None and other.ended_s is None:
                        other.ended_s = rec.started_s
            return
        if c.kind in ("drop", "delay", "partition"):
            rec.rule = BusRule(
                action="delay" if c.kind == "delay" else "drop",
                topic=c.topic,
                kinds=frozenset(c.kinds),
                senders=frozenset([c.agent] if c.agent and c.kind != "partition" else []),
                group=frozenset(c.agents),
                rate=c.rate,
                delay_s=c.delay_s,
                seed=self._seed * 1000 + self.records.index(rec),
            )
            self.bus.rules.append(rec.rule)
        if c.for_s is not None:
            self._spawn(self._end_after(rec, c.for_s))

    async def _end_after(self, rec: FaultRecord, for_s: float) -> None:
        await asyncio.sleep(for_s)
        self._end(rec)

    def _end(self, rec: FaultRecord) -> None:
        if rec.ended_s is not None:
            return
        rec.ended_s = self.now()
        if rec.rule is not None and rec.rule in self.bus.rules:
            self.bus.rules.remove(rec.rule)

    def active(self, agent: str, kind: str) -> list[FaultRecord]:
        return [
            r
            for r in self.records
            if r.config.kind == kind
            and r.config.agent == agent
            and r.started_s is not None
            and r.ended_s is None
        ]

    def finish(self) -> None:
        """The workload is over: close every window still open at this time."""
        for rec in self.records:
            if rec.started_s is not None and rec.ended_s is None and rec.config.kind != "kill":
                self._end(rec)

    def windows(self) -> list[tuple[float, float]]:
        return [w for r in self.records if (w := r.window) is not None]


def validate_faults(net: Network, faults: list[FaultConfig]) -> None:
    """Every agent a fault names exists; slow/corrupt name agents that have a model."""
    agents = {a.name: a for a in net.config.agents}
    for f in faults:
        for name in [f.agent, *f.agents] if f.agent else f.agents:
            if name not in agents:
                raise ConfigError(
                    f"{f.kind} fault names agent {name!r}, not in network "
                    f"{net.config.name!r}; agents: {', '.join(agents)}"
                )
        on_model = f.kind in MODEL_FAULTS or f.at_call is not None
        if on_model and f.agent is not None and agents[f.agent].model is None:
            raise ConfigError(
                f"a {f.kind} fault {'at_call ' if f.at_call else ''}acts through a model, "
                f"but agent {f.agent!r} is a tool; target an LLM agent"
            )
