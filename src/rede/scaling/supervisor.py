"""Agents as processes on a shared bus: process replicas, and what ``rede up`` runs.

:class:`ProcessBackend` starts replicas of an agent as ``rede agent NETWORK --bus URL --only
NAME --replicas 1`` processes, for a :class:`~rede.spawner.Spawner` on a shared bus (Redis).

:func:`up` runs a whole network as processes on one machine, until ``stop`` is set:

- every agent *not* named in ``spawn.templates``: one ``rede agent --only NAME`` process
  (with the agent's ``replicas``), started again after it exits, with a :class:`Backoff`
  of its own: ``restart_s`` at first, doubled for each exit within ``quick_s`` of its start
  in a row (a crash loop: bad key, bad URL, bad YAML for that agent), up to
  ``restart_max_s``, back to ``restart_s`` once a process has run ``quick_s`` or longer. It
  never gives up: a fixed cause (a model server back up) is picked up by the next start.
  A process killed from outside (SIGKILL, SIGTERM: an operator, the OOM killer) is no crash
  loop: it starts again after ``restart_s``. Before each restart the supervisor announces
  it on the bus (the agent, its capabilities, when it is back), so a run whose step only that
  agent serves waits for it, as long as the run's deadline allows, instead of failing;
- with a ``spawn:`` section, the templated agents: a spawner with a :class:`ProcessBackend`,
  reading load from the bus (:class:`~rede.load.BusLoad`: the backlog of each template's task
  topics, whoever submitted the runs), starts each template's initial replicas, then keeps
  it within ``min_replicas``..``max_replicas``: more replicas when tasks wait, fewer after
  ``idle_s`` of spare capacity, a new one when a replica dies below ``min_replicas``. Every
  decision is reported (``rede up`` prints it) and recorded in the ledger under
  ``<network name>.spawner``.

When ``stop`` is set every child gets SIGTERM (a clean goodbye to the registry), and SIGKILL
if it has not exited 10 s later, and a wait before a restart ends at once; :func:`up`
returns once all have exited. A ``rede up`` killed outright (SIGKILL, the OOM killer) leaves
no agent behind on Linux: each child gets SIGTERM when its parent dies
(:func:`rede.children.dying_with_parent`).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rede.bus import Bus, BusOptions
from rede.children import dying_with_parent
from rede.config import NetworkConfig
from rede.errors import RedeError
from rede.protocol.topics import Topic
from rede.runtime.registry import Registry, restarting
from rede.scaling.load import BusLoad
from rede.scaling.restarts import (
    Announce,
    Backoff,
    Report,
    keep_running,
    terminate,
)
from rede.scaling.spawner import REGISTER_TIMEOUT_S, Exited, Host, Spawner, Template, templates


class Served(Host, Protocol):
    """The network :func:`up` serves (a :class:`~rede.network.Network` serving no agent in
    this process): its bus and registry follow the agent processes."""

    bus: Bus | None

    def bus_options(self) -> BusOptions: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...




@dataclass
class _Replica:
    proc: asyncio.subprocess.Process
    id: str = ""


class ProcessBackend:
    """Replicas as processes on a shared bus: ``python -m rede agent NETWORK --bus URL
    --only NAME --replicas 1``. Stopping sends SIGTERM (a clean goodbye) to the newest idle
    one (its card's load is 0), and waits for it to exit.

    ``replicas`` counts this backend's live processes plus live replicas of the agent that
    other processes serve. A process that exits on its own is reported once by :meth:`reap`
    and no longer counted. Several replicas started at once each take one newly registered
    id (which process has which id may be swapped between them; every process is still
    stopped exactly once)."""

    def __init__(
        self,
        network_file: str | Path,
        bus_url: str,
        registry: Registry,
        *,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.network_file = Path(network_file)
        self.bus_url = bus_url
        self.registry = registry
        self.extra_args = list(extra_args)
        self._procs: dict[str, list[_Replica]] = {}
        self._claimed: set[str] = set()
        """Ids this backend's processes registered as, live or not: theirs, not others'."""

    def _alive(self, agent: str) -> list[_Replica]:
        return [r for r in self._procs.get(agent, []) if r.proc.returncode is None]

    def replicas(self, agent: str) -> int:
        others = [c for c in self.registry.cards() if c.name == agent and c.id not in self._claimed]
        return len(self._alive(agent)) + len(others)

    def reap(self) -> list[Exited]:
        gone = []
        for agent, replicas in self._procs.items():
            for r in [r for r in replicas if r.proc.returncode is not None and r.id]:
                replicas.remove(r)
                gone.append(Exited(agent, r.id, r.proc.returncode or 0))
        return gone

    async def start(self, agent: str) -> str:
        before = {c.id for c in self.registry.cards() if c.name == agent}
        proc = await asyncio.create_subprocess_exec(
            *agent_command(
                self.network_file, self.bus_url, agent, "--replicas", "1", *self.extra_args
            ),
            preexec_fn=dying_with_parent(),
        )
        replica = _Replica(proc)
        self._procs.setdefault(agent, []).append(replica)

        def new_ids(reg: Registry) -> set[str]:
            return {c.id for c in reg.cards() if c.name == agent} - before - self._claimed

        loop = asyncio.get_running_loop()
        deadline = loop.time() + REGISTER_TIMEOUT_S
        exiting = asyncio.ensure_future(proc.wait())
        try:
            while True:
                if exiting.done():
                    raise RedeError(
                        f"a process replica of {agent!r} exited with code {proc.returncode} "
                        f"before registering on {self.bus_url}"
                    )
                fresh = new_ids(self.registry)
                if fresh:  # no await since the check: no other start can take this id
                    replica.id = sorted(fresh)[0]
                    self._claimed.add(replica.id)
                    return replica.id
                left = deadline - loop.time()
                if left <= 0:
                    raise RedeError(
                        f"a process replica of {agent!r} did not register within "
                        f"{REGISTER_TIMEOUT_S:g}s on {self.bus_url}"
                    )
                # a new card may be taken by another start waiting too: then look again
                registering = asyncio.ensure_future(
                    self.registry.wait_for(lambda reg: bool(new_ids(reg)), left)
                )
                await asyncio.wait({registering, exiting}, return_when=asyncio.FIRST_COMPLETED)
                registering.cancel()
                await asyncio.gather(registering, return_exceptions=True)
        except BaseException:  # failed, or cancelled: leave no process behind
            self._procs[agent].remove(replica)
            await terminate(proc)
            raise
        finally:
            exiting.cancel()
            await asyncio.gather(exiting, return_exceptions=True)

    async def stop(self, agent: str) -> str | None:
        load = {c.id: c.load for c in self.registry.cards() if c.name == agent}
        idle = [r for r in self._alive(agent) if r.id and load.get(r.id, 0) == 0]
        if not idle:
            return None
        replica = idle[-1]  # the newest
        self._procs[agent].remove(replica)
        await terminate(replica.proc)
        return replica.id

    async def aclose(self) -> None:
        """Stop every process this backend started (SIGTERM, then SIGKILL after 10 s)."""
        procs = [r.proc for replicas in self._procs.values() for r in replicas]
        self._procs.clear()
        await asyncio.gather(*(terminate(p) for p in procs))


def agent_command(
    network_file: str | Path,
    bus_url: str,
    agent: str,
    *args: str,
) -> list[str]:
    """The command line of a ``rede agent`` process serving one agent of a network."""
    return [
        sys.executable,
        "-m",
        "rede",
        "agent",
        str(network_file),
        "--bus",
        bus_url,
        "--only",
        agent,
        *args,
    ]


def describe(name: str, data: dict[str, Any]) -> str:
    """One line for a spawner decision: ``spawn worker -> 3 replica(s): <reason>``."""
    replicas = f" -> {data['replicas']} replica(s)" if "replicas" in data else ""
    return f"{name} {data.get('agent', '')}{replicas}: {data.get('reason', '')}"


async def up(
    net: Served,
    network_file: str | Path,
    bus_url: str,
    stop: asyncio.Event,
    *,
    extra_args: Sequence[str] = (),
    restart_s: float = 1.0,
    restart_max_s: float = 60.0,
    quick_s: float = 10.0,
    report: Report = print,
) -> None:
    """Run every agent of the network in ``network_file`` as processes on ``bus_url`` until
    ``stop`` is set (see the module's docstring). ``net`` is that network loaded on that bus,
    serving no agent itself (``Network.from_yaml(file, bus=url).serve_only(set())``): its
    registry and ledger serve the spawner. ``extra_args`` go to every ``rede agent`` command."""
    Backoff(restart_s, restart_max_s, quick_s)  # invalid: fail before starting anything
    net.bus_options()  # so does an empty signing key variable, which every agent would need
    conf = net.config
    scaled = templates(conf)
    fixed = [a.name for a in conf.agents if a.name not in scaled]
    backend: ProcessBackend | None = None
    await net.start()  # the bus (restarts are announced on it) and a registry following it
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(
                    keep_running(
                        name,
                        agent_command(network_file, bus_url, name, *extra_args),
                        backoff=Backoff(restart_s, restart_max_s, quick_s),
                        report=report,
                        announce=_announcer(net),
                    )
                )
                for name in fixed
            ]
            if fixed:
                report(f"started {len(fixed)} agent process(es): {', '.join(fixed)}")
            if scaled:
                backend, spawning = await _spawn_processes(
                    net, network_file, bus_url, scaled, tg, extra_args, restart_s, report
                )
                tasks.append(spawning)
            await stop.wait()
            for task in tasks:
                task.cancel()
    except BaseExceptionGroup as group:  # a part failed: say why, as one error
        first = group.exceptions[0]
        if isinstance(first, RedeError) and len(group.exceptions) == 1:
            raise first from None
        raise
    finally:
        if backend is not None:
            await backend.aclose()
        await net.stop()


def _announcer(net: Served) -> Announce:
    capabilities = {a.name: list(a.capabilities) for a in net.config.agents}

    async def announce(name: str, back_in_s: float, quick_exits: int) -> None:
        assert net.bus is not None
        env = restarting(f"supervisor:{name}", name, capabilities[name], back_in_s, quick_exits)
        await net.bus.publish(Topic.registry(), env)

    return announce


async def _spawning(spawner: Spawner, config: NetworkConfig) -> None:
    await spawner.start_initial(config)
    await spawner.run()


async def _spawn_processes(
    net: Served,
    network_file: str | Path,
    bus_url: str,
    scaled: dict[str, Template],
    tg: asyncio.TaskGroup,
    extra_args: Sequence[str],
    restart_s: float,
    report: Report,
) -> tuple[ProcessBackend, asyncio.Task[None]]:
    """Start the spawner that scales the templated agents' processes from the backlog; its
    process backend and the task that runs it."""
    assert net.bus is not None  # started by up()
    backend = ProcessBackend(network_file, bus_url, net.registry, extra_args=extra_args)
    load = BusLoad(net.bus, {t.name: t.capabilities for t in scaled.values()})
    spawner = Spawner.for_network(net, backend, load)
    spawner.retry_s = restart_s
    to_ledger = spawner.record

    def record(name: str, **data: Any) -> None:
        if to_ledger is not None:
            to_ledger(name, **data)
        report(describe(name, data))

    spawner.record = record
    report(f"scaling {', '.join(sorted(scaled))} from the backlog on {net.bus.url}")
    return backend, tg.create_task(_spawning(spawner, net.config))
