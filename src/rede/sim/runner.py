"""Run a scenario: for each system, start its network on a real bus (in-process, or Redis),
feed it the workload, inject the faults, grade every run and aggregate the metrics.

Only the models are simulated: the bus, registry, router, dispatcher and orchestrator are the
ones a real deployment runs. Every report says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from rede.bus import Bus, BusOptions, bus_from_url
from rede.config import NetworkConfig
from rede.errors import ConfigError, RedeError
from rede.models._base import ChatModel
from rede.network import Network
from rede.orchestration.run import RunResult
from rede.protocol.messages import new_id
from rede.protocol.topics import Topic
from rede.sim.buses import FaultyBus, MeteredBus
from rede.sim.faults import FaultController, validate_faults
from rede.sim.metrics import SystemMetrics, TaskOutcome, aggregate, overlaps, task_outcome
from rede.sim.model import TASK_KEY, AnswerKey, GroundedSimModel
from rede.sim.scenario import Scenario, SystemConfig
from rede.sim.workload import SimTask, WorkloadConfig, generate

SIMULATED_NOTE = (
    "All models are SIMULATED (the sim backend): quality, latency, price and failures are drawn "
    "from calibrated profiles, not produced by an LLM. The bus, registry, routing and "
    "orchestrator are the real ones."
)

Progress = Callable[[str, int, int], None]
"""``progress(system, tasks done, tasks in all)``."""
RunObserver = Callable[[str, SimTask, RunResult | None], None]
"""``on_run(system, task, run)`` for every finished run (None: it left no record)."""


class SystemReport(BaseModel):
    name: str
    network: str
    agents: list[str]
    bus: str
    metrics: SystemMetrics
    faults: list[dict[str, Any]] = Field(default_factory=list)
    background_messages: int = 0
    """Envelopes of no run: heartbeats and goodbyes."""
    tasks: list[TaskOutcome] = Field(default_factory=list)


class SimReport(BaseModel):
    simulated: bool = True
    note: str = SIMULATED_NOTE
    scenario: str
    description: str = ""
    time_scale: float
    seed: int
    concurrency: int
    workload: WorkloadConfig
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    systems: list[SystemReport] = Field(default_factory=list)

    def system(self, name: str) -> SystemReport:
        return next(s for s in self.systems if s.name == name)


def grounded_models(
    config: NetworkConfig, key: AnswerKey, *, time_scale: float, seed: int
) -> dict[str, ChatModel]:
    """One grounded simulated model per model of the network; other backends are refused."""
    models: dict[str, ChatModel] = {}
    for name, conf in config.models.items():
        backend, _, profile = conf.spec.partition(":")
        if backend != "sim":
            raise ConfigError(
                f"model {name!r} of network {config.name!r} is {conf.spec!r}: scenarios run on "
                "simulated models only (spec 'sim:<size>', with 'sim:' overrides)"
            )
        models[name] = GroundedSimModel.grounded(
            profile,
            key,
            seed=conf.seed + 1000 * seed,
            time_scale=time_scale,
            overrides=conf.sim,
            name=name,
        )
    return models


def make_bus(url: str | None, options: BusOptions) -> Bus:
    """The bus a system runs on; on Redis, in a namespace of its own."""
    if url and url.startswith(("redis://", "rediss://", "unix://")):
        from rede.bus.redis import RedisBus

        return RedisBus(url, options, namespace=f"rede-sim-{uuid.uuid4().hex[:8]}:")
    return bus_from_url(url, options)


def describe_agents(config: NetworkConfig) -> list[str]:
    out = []
    for a in config.agents:
        what = f"tool:{a.tool}" if a.tool else config.models[a.model or ""].spec
        copies = f" x{a.replicas}" if a.replicas > 1 else ""
        out.append(f"{a.name} ({what}{copies}): {', '.join(a.capabilities)}")
    return out


@dataclass
class _Raw:
    task: SimTask
    run: RunResult | None
    started_s: float
    ended_s: float
    error: str | None = None


async def run_system(
    scenario: Scenario,
    system: SystemConfig,
    tasks: list[SimTask],
    *,
    bus_url: str | None = None,
    time_scale: float | None = None,
    concurrency: int | None = None,
    progress: Progress | None = None,
    on_run: RunObserver | None = None,
) -> SystemReport:
    config = scenario.network_config(system)
    scale = scenario.time_scale if time_scale is None else time_scale
    models = grounded_models(config, AnswerKey(tasks), time_scale=scale, seed=scenario.seed)
    inner = make_bus(bus_url, Network(config).bus_options())
    faulty = FaultyBus(inner)
    metered = MeteredBus(faulty)
    net = Network(config, bus=metered, models=models, time_scale=scale)
    try:
        controller = FaultController(net, faulty, system.faults, seed=scenario.seed)
        await net.start()
    except BaseException:
        await net.stop()
        await metered.aclose()
        raise
    raws: list[_Raw] = []
    try:
        controller.install()
        controller.begin()
        raws = await _feed(
            net,
            controller,
            tasks,
            concurrency or scenario.concurrency,
            system.name,
            progress,
            on_run,
        )
        controller.finish()
        wall_s = controller.now()
    finally:
        await controller.aclose()
        await net.stop()
        if metered.url != "memory://":
            await _clean(metered, config)
        await metered.aclose()
    windows = controller.windows()
    outcomes = [
        task_outcome(
            r.task,
            r.run,
            traffic=metered.traffic(r.run.run_id) if r.run else None,
            started_s=r.started_s,
            ended_s=r.ended_s,
            windows=windows,
            error=r.error,
        )
        for r in raws
    ]
    faults = []
    for rec in controller.records:
        summary = rec.summary()
        if rec.window is not None:
            hit = [o for o in outcomes if overlaps(o.started_s, o.ended_s, [rec.window])]
            summary["tasks_exposed"] = len(hit)
            summary["tasks_answered"] = sum(o.status == "ok" for o in hit)
            summary["tasks_recovered"] = sum(1 for o in hit if o.status == "ok" and o.recoveries)
        faults.append(summary)
    return SystemReport(
        name=system.name,
        network=config.name,
        agents=describe_agents(config),
        bus=inner.url,
        metrics=aggregate(outcomes, wall_s=wall_s),
        faults=faults,
        background_messages=metered.traffic("").messages,
        tasks=outcomes,
    )


async def _feed(
    net: Network,
    controller: FaultController,
    tasks: list[SimTask],
    concurrency: int,
    system: str,
    progress: Progress | None,
    on_run: RunObserver | None,
) -> list[_Raw]:
    """Submit the tasks, at most ``concurrency`` in flight; task-triggered faults fire as
    each task is submitted."""
    slots = asyncio.Semaphore(concurrency)
    raws: list[_Raw | None] = [None] * len(tasks)
    done = 0

    async def one(i: int, task: SimTask) -> None:
        nonlocal done
        try:
            started = controller.now()
            error = None
            try:
                run = await net.ask(
                    task.request, metadata={TASK_KEY: task.id}, run_id=new_id("run-")
                )
            except RedeError as exc:
                run, error = exc.run, f"{type(exc).__name__}: {exc}"
            raws[i] = _Raw(
                task=task, run=run, started_s=started, ended_s=controller.now(), error=error
            )
            if on_run is not None:
                on_run(system, task, run)
        finally:
            slots.release()
            done += 1
            if progress is not None:
                progress(system, done, len(tasks))

    async with asyncio.TaskGroup() as tg:
        for i, task in enumerate(tasks):
            await slots.acquire()
            await controller.on_task(i)
            tg.create_task(one(i, task))
    return [r for r in raws if r is not None]


async def _clean(bus: Bus, config: NetworkConfig, within_s: float = 5.0) -> None:
    """Remove the streams a system left on a shared bus (Redis), if it answers in time."""
    topics = [Topic.registry(), Topic.events(), Topic.dead()]
    for agent in config.agents:
        for cap in agent.capabilities:
            topics += [Topic.task(cap, agent.name), Topic.bids(cap)]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within_s):
            for topic in topics:
                with contextlib.suppress(RedeError):
                    await bus.delete(topic)


async def run_scenario(
    scenario: Scenario,
    *,
    bus_url: str | None = None,
    time_scale: float | None = None,
    tasks: int | None = None,
    seed: int | None = None,
    concurrency: int | None = None,
    systems: list[str] | None = None,
    progress: Progress | None = None,
    on_run: RunObserver | None = None,
) -> SimReport:
    """Run every system of a scenario (or those named) on the same generated workload."""
    if seed is not None:
        scenario = scenario.model_copy(update={"seed": seed})
    workload = scenario.workload
    if tasks is not None:
        workload = workload.model_copy(update={"tasks": tasks})
    chosen = scenario.systems
    if systems:
        unknown = set(systems) - {s.name for s in chosen}
        if unknown:
            raise ConfigError(
                f"no system {', '.join(sorted(unknown))} in scenario {scenario.name!r}; "
                f"systems: {', '.join(s.name for s in chosen)}"
            )
        chosen = [s for s in chosen if s.name in systems]
    for system in chosen:  # fail before any system runs, naming the system at fault
        config = scenario.network_config(system)
        try:
            grounded_models(config, AnswerKey([]), time_scale=0.0, seed=scenario.seed)
            validate_faults(Network(config), system.faults)
        except ConfigError as exc:
            raise ConfigError(f"scenario {scenario.name!r}, system {system.name!r}: {exc}") from exc
    generated = generate(workload, scenario.seed)
    report = SimReport(
        scenario=scenario.name,
        description=scenario.description,
        time_scale=scenario.time_scale if time_scale is None else time_scale,
        seed=scenario.seed,
        concurrency=concurrency or scenario.concurrency,
        workload=workload,
    )
    for system in chosen:
        report.systems.append(
            await run_system(
                scenario,
                system,
                generated,
                bus_url=bus_url,
                time_scale=time_scale,
                concurrency=concurrency,
                progress=progress,
                on_run=on_run,
            )
        )
    return report
