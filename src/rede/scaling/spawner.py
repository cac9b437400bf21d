"""Dynamic spawning: replicas started and stopped by queue depth and waiting time.

A network with a ``spawn:`` section names, per agent, the bounds it may be scaled within;
the agent's own definition is the template. The :class:`Spawner` reads each agent's load
through a :class:`~rede.load.LoadView`: the router's calls in this process
(:class:`~rede.load.RouterLoad`, waking on every call started or finished), or the bus's
backlog of the agent's task topics (:class:`~rede.load.BusLoad`, polled), and every
``interval_s`` at the latest, per template:

- *below the floor*: starts replicas up to ``min_replicas`` (at start, and after a replica
  died: :meth:`SpawnBackend.reap` reports it, and it is recorded);
- *scale up*: when the tasks waiting beyond the replicas' concurrency (``in flight -
  replicas x concurrency``) exceed ``backlog_per_replica`` per replica, or some wait and the
  queue wait of the agent's tasks exceeds ``max_wait_s``: starts enough replicas to
  absorb the backlog, at most ``max_step`` at once and ``max_replicas`` in all;
- *scale down*: when the replicas needed for what is in flight (``ceil(in flight /
  concurrency)``, at least ``min_replicas``) are fewer than those running for ``idle_s``,
  stops the surplus, idle replicas only.

A step whose capability no live agent serves starts a replica of a template serving it
(:meth:`Spawner.ensure`; ``on_missing: error`` turns that off). Every decision is recorded
with its reason: in :attr:`Spawner.decisions`, through the ``record`` callback (the network
writes it to the ledger under ``<network>.spawner``), and on the run that needed a capability.

Replicas are started by a :class:`SpawnBackend`. :class:`InProcessBackend` runs them as
``AgentRunner`` tasks in this process on the network's bus (the embedded bus, or any bus).
:class:`~rede.supervisor.ProcessBackend` is for shared buses (Redis): each replica is a
``rede agent NETWORK --bus URL --only NAME --replicas 1`` process, which registers like any
agent and is stopped with SIGTERM (a clean goodbye); ``rede up`` runs it with a
:class:`~rede.load.BusLoad` (see :mod:`rede.scaling.supervisor`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from rede.agents.specialists import SpecialistSpec
from rede.config import AgentConfig, NetworkConfig, SpawnConfig, SpawnTemplate
from rede.errors import RedeError
from rede.orchestration.ledger import Ledger
from rede.routing.router import Router
from rede.runtime.registry import Registry
from rede.scaling.load import LoadView, RouterLoad

if TYPE_CHECKING:
    from rede.runtime.agent import AgentRunner


class Host(Protocol):
    """What the spawner needs of the network it scales (a :class:`~rede.network.Network`
    is one): its configuration, its runners, and a way to start and stop one."""

    config: NetworkConfig
    runners: list[AgentRunner]
    registry: Registry
    router: Router
    ledger: Ledger

    def spec(self, agent: AgentConfig) -> SpecialistSpec: ...

    def start_runner(self, spec: SpecialistSpec) -> AgentRunner: ...

    async def stop_runner(self, runner: AgentRunner) -> None: ...


REGISTER_TIMEOUT_S = 10.0
"""How long a new replica has to register before its start counts as failed."""

Recorder = Callable[..., None]
"""``record(name, **data)``: where decisions go besides :attr:`Spawner.decisions`."""


def initial_replicas(config: NetworkConfig, agent: AgentConfig) -> int:
    """Replicas to start with: the template's ``initial``, else the agent's within bounds."""
    template = config.spawn.templates.get(agent.name) if config.spawn else None
    if template is None:
        return agent.replicas
    if template.initial is not None:
        return min(template.initial, template.max_replicas)
    return max(template.min_replicas, min(agent.replicas, template.max_replicas))


@dataclass(frozen=True)
class Exited:
    """A replica that ended without being stopped."""

    agent: str
    replica: str
    code: int


class SpawnBackend(Protocol):
    """Starts and stops replicas of agents by name."""

    def replicas(self, agent: str) -> int:
        """Replicas started by or known to this backend, registered or not yet."""

    async def start(self, agent: str) -> str:
        """Start one replica; return its id once the registry sees it."""

    async def stop(self, agent: str) -> str | None:
        """Stop one idle replica cleanly; its id, or None when none is idle."""

    def reap(self) -> list[Exited]:
        """Replicas that ended on their own since the last call (no longer counted)."""


class InProcessBackend:
    """Replicas as ``AgentRunner`` tasks of a :class:`~rede.network.Network`."""

    def __init__(self, network: Host) -> None:
        self.network = network
        self._agents = {a.name: a for a in network.config.agents}

    def _runners(self, agent: str) -> list[AgentRunner]:
        return [r for r in self.network.runners if r.spec.name == agent]

    def replicas(self, agent: str) -> int:
        return len(self._runners(agent))

    async def start(self, agent: str) -> str:
        runner = self.network.start_runner(self.network.spec(self._agents[agent]))
        await _registered(self.network.registry, runner.id, agent)
        return runner.id

    async def stop(self, agent: str) -> str | None:
        idle = [r for r in self._runners(agent) if r.in_flight == 0]
        if not idle:
            return None
        runner = idle[-1]  # the newest
        await self.network.stop_runner(runner)
        return runner.id

    def reap(self) -> list[Exited]:
        return []  # in-process replicas end only when the network stops or kills them


async def _registered(registry: Registry, replica_id: str, agent: str) -> None:
    try:
        await registry.wait_for(
            lambda reg: any(c.id == replica_id for c in reg.cards()), timeout=REGISTER_TIMEOUT_S
        )
    except TimeoutError:
        raise RedeError(
            f"a new replica of {agent!r} did not register within {REGISTER_TIMEOUT_S:g}s"
        ) from None


@dataclass
class Template:
    name: str
    capabilities: list[str]
    concurrency: int
    bounds: SpawnTemplate


def templates(config: NetworkConfig) -> dict[str, Template]:
    """The agents named in ``spawn.templates``, with their bounds (none without ``spawn:``)."""
    if config.spawn is None:
        return {}
    agents = {a.name: a for a in config.agents}
    return {
        name: Template(name, agents[name].capabilities, agents[name].concurrency, bounds)
        for name, bounds in config.spawn.templates.items()
    }


@dataclass
class Spawner:
    backend: SpawnBackend
    load: LoadView
    registry: Registry
    config: SpawnConfig
    templates: dict[str, Template]
    record: Recorder | None = None
    clock: Callable[[], float] = time.monotonic
    retry_s: float = 1.0
    """After a failed start, wait this long before starting that template again."""
    decisions: list[dict[str, Any]] = field(default_factory=list)
    _calm_since: dict[str, float] = field(default_factory=dict, init=False)
    _failed_at: dict[str, float] = field(default_factory=dict, init=False)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict, init=False)
    _changed: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    @classmethod
    def for_network(
        cls,
        network: Host,
        backend: SpawnBackend | None = None,
        load: LoadView | None = None,
    ) -> Spawner:
        """The network's spawner: decisions go to its ledger under ``<name>.spawner``.
        Default: in-process replicas, scaled by this process's router."""
        conf = network.config
        if conf.spawn is None:
            raise RedeError("the network has no 'spawn:' section")
        run_id = f"{conf.name}.spawner"

        def record(name: str, **data: Any) -> None:
            network.ledger.record_decision(run_id, name, **data)

        return cls(
            backend or InProcessBackend(network),
            load or RouterLoad(network.router),
            network.registry,
            conf.spawn,
            templates(conf),
            record,
        )

    # ------------------------------------------------------------------ observing

    def replicas(self, agent: str) -> int:
        return self.backend.replicas(agent)

    def _decide(self, name: str, **data: Any) -> None:
        self.decisions.append({"name": name, **data})
        if self.record is not None:
            self.record(name, **data)
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[Spawner], bool], timeout: float) -> None:
        """Wait until ``predicate(self)`` holds, checked after every scaling decision."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                await self._changed.wait()

    # ------------------------------------------------------------------ on demand

    def spawnable(self) -> set[str]:
        """Capabilities a template could start an agent for."""
        if self.config.on_missing == "error":
            return set()
        return {
            cap
            for t in self.templates.values()
            if t.bounds.max_replicas > 0
            for cap in t.capabilities
        }

    async def ensure(self, capability: str) -> str | None:
        """Start a replica of a template serving ``capability`` (the cheapest-named first);
        its name, or None if no template serves it."""
        if self.config.on_missing == "error":
            return None
        serving = sorted(t.name for t in self.templates.values() if capability in t.capabilities)
        for name in serving:
            async with self._locks.setdefault(name, asyncio.Lock()):
                if self.registry.agents(capability):
                    return next(v.name for v in self.registry.agents(capability))
                if self.replicas(name) >= self.templates[name].bounds.max_replicas:
                    continue
                replica = await self.backend.start(name)
                self._decide(
                    "spawn",
                    agent=name,
                    replicas=self.replicas(name),
                    started=[replica],
                    reason=f"a step needs {capability!r} and no live agent serves it",
                )
                return name
        return None

    async def start_initial(self, config: NetworkConfig) -> None:
        """Start each template's initial replicas (:func:`initial_replicas`), for a backend
        whose replicas the network does not start itself (processes)."""
        agents = {a.name: a for a in config.agents}
        for name in sorted(self.templates):
            want = initial_replicas(config, agents[name])
            add = want - self.replicas(name)
            if add <= 0:
                continue
            async with self._locks.setdefault(name, asyncio.Lock()):
                try:
                    started = await asyncio.gather(*(self.backend.start(name) for _ in range(add)))
                except RedeError as exc:
                    self._failed_at[name] = self.clock()
                    self._decide("spawn_failed", agent=name, reason=str(exc))
                    continue
                self._decide(
                    "spawn",
                    agent=name,
                    replicas=self.replicas(name),
                    started=list(started),
                    reason=f"initial replicas: {want}",
                )

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Watch and scale until cancelled."""
        while True:
            await self.step()
            await self.load.wait_change(self.config.interval_s)

    async def step(self) -> None:
        """One look at every template, acting where a rule says so."""
        for gone in self.backend.reap():
            self._decide(
                "replica_exited",
                agent=gone.agent,
                replica=gone.replica,
                code=gone.code,
                replicas=self.replicas(gone.agent),
                reason=f"replica {gone.replica} exited on its own with code {gone.code}",
            )
        await self.load.refresh()
        for name in sorted(self.templates):
            async with self._locks.setdefault(name, asyncio.Lock()):
                failed_at = self._failed_at.get(name)
                if failed_at is not None and self.clock() - failed_at < self.retry_s:
                    continue
                try:
                    await self._scale(self.templates[name])
                except RedeError as exc:
                    self._failed_at[name] = self.clock()
                    self._decide("spawn_failed", agent=name, reason=str(exc))

    async def _scale(self, t: Template) -> None:
        replicas = self.replicas(t.name)
        in_flight = self.load.in_flight(t.name)
        add, reason = self._to_add(t, replicas, in_flight)
        if add:
            self._calm_since.pop(t.name, None)
            add = min(add, self.config.max_step, max(0, t.bounds.max_replicas - replicas))
            if add <= 0:
                return
            started = await asyncio.gather(*(self.backend.start(t.name) for _ in range(add)))
            self._decide(
                "spawn",
                agent=t.name,
                replicas=self.replicas(t.name),
                started=list(started),
                in_flight=in_flight,
                wait_s=round(self.load.wait_s(t.name), 3),
                reason=reason,
            )
            return
        await self._scale_down(t, replicas, in_flight)

    def _to_add(self, t: Template, replicas: int, in_flight: int) -> tuple[int, str]:
        """How many replicas to start now, and why (0 when none)."""
        b = self.config
        backlog = max(0, in_flight - replicas * t.concurrency)
        wait = self.load.wait_s(t.name)
        room = t.bounds.max_replicas - replicas
        if replicas < t.bounds.min_replicas:
            return (
                t.bounds.min_replicas - replicas,
                f"{replicas} replica(s) running, below min_replicas={t.bounds.min_replicas}",
            )
        if room > 0 and backlog > b.backlog_per_replica * max(replicas, 1):
            return math.ceil(backlog / t.concurrency), (
                f"{backlog} task(s) waiting beyond {replicas} replica(s) x concurrency "
                f"{t.concurrency} (threshold {b.backlog_per_replica:g} per replica)"
            )
        if room > 0 and backlog > 0 and wait > b.max_wait_s:
            return 1, (
                f"{backlog} task(s) waiting; queue wait {wait:.2f}s "
                f"over max_wait_s={b.max_wait_s:g}"
            )
        return 0, ""

    async def _scale_down(self, t: Template, replicas: int, in_flight: int) -> None:
        """Stop idle replicas the load has not needed for ``idle_s``."""
        b = self.config
        needed = max(t.bounds.min_replicas, math.ceil(in_flight / t.concurrency))
        if replicas <= needed:
            self._calm_since.pop(t.name, None)
            return
        since = self._calm_since.setdefault(t.name, self.clock())
        if self.clock() - since < b.idle_s:
            return
        stopped = []
        for _ in range(replicas - needed):
            replica = await self.backend.stop(t.name)
            if replica is None:
                break
            stopped.append(replica)
        self._calm_since.pop(t.name, None)
        if stopped:
            self._decide(
                "despawn",
                agent=t.name,
                replicas=self.replicas(t.name),
                stopped=stopped,
                in_flight=in_flight,
                reason=(
                    f"{in_flight} call(s) in flight need {needed} replica(s); "
                    f"{replicas} ran for {b.idle_s:g}s"
                ),
            )
