"""``Network``: the facade a user calls. It builds models and agents from a description,
starts them on a bus with a registry and an orchestrator, and answers requests.

    net = Network.from_yaml("team.yaml")
    async with net:
        result = await net.ask("Compare Redis Streams and Kafka for a small team")
    print(result.answer, result.usage.cost_usd)

On the in-process bus every agent runs in this process. With a Redis bus, a Network can
serve only some agents (``rede agent --only``) or none (``agents=False``: submit runs to
agents served by other processes).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from rede.agents.specialists import SpecialistSpec
from rede.agents.tools import Tool, ToolFn
from rede.assembly import Assembly
from rede.bus import Bus, BusOptions, bus_from_url
from rede.config import AgentConfig, NetworkConfig
from rede.errors import ConfigError, RedeError
from rede.models import ChatModel
from rede.models.sim import SimModel
from rede.orchestration.admission import Admission
from rede.orchestration.human import answer_wait
from rede.orchestration.ledger import Ledger, SQLiteLedger
from rede.orchestration.orchestrator import Observer, Orchestrator
from rede.orchestration.plan import Plan
from rede.orchestration.run import RunResult
from rede.routing.router import Router
from rede.runtime.agent import AgentRunner
from rede.runtime.registry import Registry
from rede.scaling.spawner import Spawner, initial_replicas


class Network:
    def __init__(
        self,
        config: NetworkConfig,
        *,
        bus: Bus | str | None = None,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        ledger: Ledger | str | Path | None = None,
        time_scale: float | None = None,
        models: dict[str, ChatModel] | None = None,
        tools: Iterable[Tool | ToolFn] = (),
    ) -> None:
        """``base_url``/``model`` point every LLM agent at one OpenAI-compatible server.
        ``models`` supplies ready model objects by name (tests pass scripted models here).
        ``tools`` are Python functions (or ``@tool`` objects) as agents: an agent whose
        ``tool:`` names one runs it, and a tool no agent names gets an agent of its own,
        named after it, serving its capability. ``time_scale`` scales the latency of
        simulated models (0 = instant)."""
        self.config = config
        self.parts = Assembly(
            config,
            models=models,
            tools=tools,
            base_url=base_url,
            model_override=model,
            api_key=api_key,
            time_scale=time_scale,
        )
        self.models = self.parts.models
        self.tools = self.parts.tools
        self.dialects = self.parts.dialects
        """Structured-output dialects found per server, shared by this network's models."""
        self._bus_arg = bus
        if isinstance(ledger, str | Path):
            ledger = SQLiteLedger(ledger)
        self.ledger = ledger or Ledger()
        self.registry = Registry(ttl_s=config.agent_ttl_s)
        self.router = Router(self.registry, config.routing, configured=_configured(config))
        self.bus: Bus | None = None
        self.orchestrator: Orchestrator | None = None
        lim = config.limits
        self.admission = Admission(config.name, lim.max_runs, lim.admit_wait_s)
        """Runs at once here, and the next one's wait or ``Busy`` refusal."""
        self.runners: list[AgentRunner] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._following: asyncio.Task[None] | None = None
        """The registry following the bus: once it fails, no agent can be heard."""
        self._runner_tasks: dict[str, asyncio.Task[None]] = {}
        self._owns_bus = False
        self._serve: set[str] | None = None
        self._agents_seen = False
        self.spawner: Spawner | None = None
        """Scales agents named in the ``spawn:`` section (in-process replicas)."""

    @classmethod
    def from_yaml(cls, path: str | Path, **kwargs: Any) -> Network:
        return cls(NetworkConfig.from_yaml(path), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any], **kwargs: Any) -> Network:
        return cls(NetworkConfig.from_dict(data), **kwargs)

    # ------------------------------------------------------------------ building

    def bus_options(self) -> BusOptions:
        return self.parts.bus_options(self._bus_arg if isinstance(self._bus_arg, str) else None)

    def model(self, name: str) -> ChatModel:
        return self.parts.model(name)

    def spec(self, agent: AgentConfig) -> SpecialistSpec:
        return self.parts.spec(agent)

    @property
    def simulated(self) -> bool:
        return any(isinstance(m, SimModel) for m in self.models.values())

    # ------------------------------------------------------------------ lifecycle

    def serve_only(self, names: Iterable[str] | None) -> Self:
        """Serve only these agents in this process (None: all; empty: none)."""
        if names is not None:
            names = set(names)
            unknown = names - {a.name for a in self.config.agents}
            if unknown:
                raise ConfigError(
                    f"unknown agent(s) {', '.join(sorted(unknown))}; network has: "
                    f"{', '.join(a.name for a in self.config.agents)}"
                )
        self._serve = names
        return self

    async def start(self, *, wait_s: float = 10.0, replicas: int | None = None) -> None:
        if isinstance(self._bus_arg, Bus):
            self.bus = self._bus_arg
        else:
            self.bus = bus_from_url(self._bus_arg or self.config.bus.url, self.bus_options())
            self._owns_bus = True
        self._following = asyncio.create_task(self.registry.follow(self.bus))
        self._tasks.append(self._following)
        await self.parts.open_remote(self._serve)  # MCP servers, A2A agents: capabilities
        for agent in self.config.agents:
            if self._serve is not None and agent.name not in self._serve:
                continue
            spec = self.spec(agent)
            for _ in range(replicas or initial_replicas(self.config, agent)):
                self.start_runner(spec)
        self.orchestrator = Orchestrator(
            self.bus,
            self.registry,
            self.router,
            self.ledger,
            self.config.limits,
            network=self.config.name,
            human=self.config.human,
            durable=self.config.durable,
            on_step_failure=self.config.on_step_failure,
        )
        expected = {r.id for r in self.runners}
        try:
            await self.registry.wait_for(
                lambda reg: expected <= {c.id for c in reg.cards()}, timeout=wait_s
            )
        except TimeoutError:
            failed = [t for t in self._tasks if t.done() and t.exception()]
            if failed:
                raise RedeError(f"an agent failed to start: {failed[0].exception()}") from None
            raise RedeError(
                f"agents did not register within {wait_s:g}s on {self.bus.url}"
            ) from None
        if self.config.spawn is not None and self._serve is None:
            self.spawner = Spawner.for_network(self)
            self.router.spawner = self.spawner
            self._tasks.append(asyncio.create_task(self.spawner.run()))

    def start_runner(self, spec: SpecialistSpec) -> AgentRunner:
        """Start one more replica of an agent in this process (used by the spawner too)."""
        if self.bus is None:
            raise RedeError("the network is not started")
        runner = AgentRunner(
            self.bus,
            spec,
            heartbeat_s=self.config.heartbeat_s,
            card_ttl_s=self.config.agent_ttl_s,
        )
        self.runners.append(runner)
        task = asyncio.create_task(runner.run())
        self._runner_tasks[runner.id] = task
        self._tasks.append(task)
        return runner

    async def stop_runner(self, runner: AgentRunner) -> None:
        """Stop one replica cleanly (it says goodbye to the registry)."""
        task = self._runner_tasks.pop(runner.id, None)
        if runner in self.runners:
            self.runners.remove(runner)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self._tasks.remove(task)

    async def kill(self, name: str) -> int:
        """Fault injection: crash every local replica of agent ``name`` (no goodbye, tasks in
        hand left unacknowledged). The registry notices when their heartbeats stop."""
        killed = 0
        for runner in [r for r in self.runners if r.spec.name == name]:
            task = self._runner_tasks.pop(runner.id)
            runner.kill()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self._tasks.remove(task)
            self.runners.remove(runner)
            killed += 1
        if not killed:
            raise ConfigError(f"no running local replica of agent {name!r}")
        return killed

    async def wait_for_agents(self, capabilities: Iterable[str], timeout: float = 10.0) -> None:
        """Wait until agents (possibly in other processes) serve these capabilities."""
        need = set(capabilities)
        waiting = asyncio.ensure_future(
            self.registry.wait_for(lambda reg: need <= reg.capabilities(), timeout=timeout)
        )
        try:
            following = self._following
            if following is not None:  # the registry cannot hear agents once this has failed
                await asyncio.wait({waiting, following}, return_when=asyncio.FIRST_COMPLETED)
                if following.done() and not following.cancelled() and following.exception():
                    raise following.exception()  # type: ignore[misc]
            await waiting
        except TimeoutError:
            missing = need - self.registry.capabilities()
            raise RedeError(
                f"no live agent for {', '.join(sorted(missing))} after {timeout:g}s; "
                "start them with `rede agent` or `rede up`"
            ) from None
        finally:
            waiting.cancel()

    async def stop(self) -> None:
        for task in reversed(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._runner_tasks.clear()
        self.runners.clear()
        await self.parts.aclose_remote()
        for model in self.models.values():
            await model.aclose()
        if self.bus is not None and self._owns_bus:
            await self.bus.aclose()

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """Keep this process's agents running until cancelled (``rede agent``)."""
        await asyncio.gather(*self._tasks)

    # ------------------------------------------------------------------ asking

    async def ask(
        self,
        request: str,
        *,
        metadata: dict[str, Any] | None = None,
        observer: Observer | None = None,
        plan: Plan | None = None,
        run_id: str | None = None,
    ) -> RunResult:
        if self.orchestrator is None:
            raise RedeError(
                "the network is not started: use `async with net:` or `await "
                "net.start()` before ask()"
            )
        if not request.strip():
            raise ConfigError("the request is empty")
        if not self._agents_seen:
            # agents served by other processes announce themselves within a heartbeat
            missing = self.config.capabilities - self.registry.capabilities()
            missing -= self.router.spawnable()  # dormant templates start when a step needs them
            if missing:
                with contextlib.suppress(RedeError):
                    await self.wait_for_agents(missing, timeout=self.config.agent_ttl_s)
            self._agents_seen = True
        async with self.admission.admitted(run_id):  # raises Busy: nothing started, nothing spent
            return await self.orchestrator.run(
                request, metadata=metadata, observer=observer, plan=plan, run_id=run_id
            )

    # ------------------------------------------------------------------ durable runs

    async def resume(
        self, run_id: str, *, observer: Observer | None = None, force: bool = False
    ) -> RunResult:
        """Take up a run from its checkpoint in this network's ledger (its process died or
        stopped): finished steps are kept, not re-run or re-billed; see
        :mod:`rede.orchestration.durable`."""
        if self.orchestrator is None:
            raise RedeError("the network is not started: `async with net:` before resume()")
        return await self.orchestrator.resume(run_id, observer=observer, force=force)

    def approve(
        self,
        run_id: str,
        step: str | None = None,
        *,
        approved: bool = True,
        reason: str = "",
        text: str = "",
        by: str = "api",
    ) -> str:
        """A person's answer to a paused run: approve (or reject, with a reason) its plan or
        one step's output (``text`` replaces the output), or answer a question (``text``).
        Written to the ledger, where the run (in this process or any other) finds it.
        ``step`` None: what the run waits for now, if only one thing. Returns the wait's id."""
        wait = answer_wait(
            self.ledger, run_id, step, approved=approved, reason=reason, text=text, by=by
        )
        if self.orchestrator is not None:  # a run waiting in this process goes on at once
            self.orchestrator.wake(run_id, wait)
        return wait

    def ask_sync(self, request: str, **kwargs: Any) -> RunResult:
        """:meth:`ask` for code that is not async: start the network, ask, stop it. The
        same arguments; a RedeError if called where an event loop is already running."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RedeError(
                "ask_sync() cannot run inside a running event loop; use `await net.ask(...)`"
            )

        async def once() -> RunResult:
            async with self:
                return await self.ask(request, **kwargs)

        return asyncio.run(once())

    def feedback(
        self, run: RunResult | str, ok: bool, *, step: str | None = None
    ) -> list[dict[str, Any]]:
        """A verification outcome: the answer of ``run`` (a run record or a run id in the
        ledger), or of one ``step``, was checked and found right (``ok``) or wrong. Routing's
        observed quality of the agent that produced it moves accordingly (an outcome counts
        4x a self-reported confidence); recorded on the run as a ``feedback`` decision.
        Returns ``[{step, agent, capability}]``, the agents credited or blamed."""
        if isinstance(run, RunResult):
            run_id, decisions, plan = run.run_id, run.decisions, run.plan
        else:
            run_id, plan = run, None
            decisions = [{"name": e.name, **e.data} for e in self.ledger.decisions(run)]
            if not decisions:
                raise ConfigError(f"no run {run!r} in this network's ledger")
        targets = self.router.observe_run(
            decisions, ok, step=step, plan=plan.model_dump() if plan is not None else None
        )
        for t in targets:
            self.ledger.record_decision(run_id, "feedback", ok=ok, **t)
            if isinstance(run, RunResult):
                run.decisions.append({"name": "feedback", "ok": ok, **t})
        return targets


def _configured(config: NetworkConfig) -> frozenset[str]:
    """Capabilities a step waits for when no agent serving them is live: every configured
    agent's, but a spawn template's only if a missing one is spawned (``on_missing: spawn``),
    not when the network asks for an error."""
    spawn = config.spawn
    return frozenset(
        cap
        for agent in config.agents
        if spawn is None or spawn.on_missing == "spawn" or agent.name not in spawn.templates
        for cap in agent.capabilities
    )


async def ask(path: str | Path, request: str, **kwargs: Any) -> RunResult:
    """One-shot helper: start the network described at ``path``, ask, stop."""
    async with Network.from_yaml(path, **kwargs) as net:
        return await net.ask(request)
