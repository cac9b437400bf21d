"""Durable runs under two orchestrators on one ledger, the races the chaos soak
(``benchmarks/chaos.py``) goes after: a new run is held from its very first checkpoint (never
an orphan another server may adopt while its own server starts it), a run a server accepted
is in the ledger before the client hears of it, and an orchestrator that stalled past its
lease never takes back a run another one adopted (both would answer it)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from rede.errors import RunTakenOver
from rede.network import Network
from rede.orchestration.ledger import Ledger, SQLiteLedger
from rede.orchestration.plan import Plan, Step
from rede.protocol.messages import Task
from rede.server.runs import RunManager


def network(ledger: Ledger, *tools: Any) -> Network:
    return Network.from_dict(
        {
            "name": "races",
            "agents": [{"name": "worker", "capabilities": ["research"], "tool": "work"}],
            "heartbeat_s": 0.1,
            "agent_ttl_s": 1,
            "limits": {"step_timeout_s": 10, "step_retries": 0},
            "durable": {"lease_s": 2},
        },
        ledger=ledger,
        tools=list(tools),
    )


async def work(task: Task) -> str:
    return f"done: {task.instruction}"


class WatchedLedger(Ledger):
    """Notes, after every checkpoint written, which runs look orphaned to another server."""

    def __init__(self) -> None:
        super().__init__()
        self.seen_orphans: set[str] = set()

    def save_run(self, *args: Any, **kwargs: Any) -> bool:
        saved = super().save_run(*args, **kwargs)
        self.seen_orphans.update(self.orphans())
        return saved


async def test_a_new_run_is_never_an_orphan_between_its_first_checkpoint_and_its_claim() -> None:
    ledger = WatchedLedger()
    async with network(ledger, work) as net:
        result = await net.ask("one topic")
    assert result.status == "ok"
    assert result.run_id not in ledger.seen_orphans, (
        "another server could have adopted the run while its own server started it"
    )


async def test_a_run_the_server_accepted_is_durable_before_the_client_hears_of_it(
    tmp_path: Path,
) -> None:
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    async with network(ledger, work) as net:
        runs = RunManager({"races": net}, ledger)
        run = runs.start("races", "one topic", source="runs")  # the 202 goes out now
        row = ledger.load_run(run.id)  # before the run's task had a chance to start
        assert row is not None, "a server killed now would lose a run it accepted"
        assert row.status == "running" and run.id not in ledger.orphans()
        await run.wait()
        assert run.status == "ok", run.error
    assert ledger.load_run(run.id).status == "ok"  # type: ignore[union-attr]


async def test_a_stalled_orchestrator_does_not_take_back_a_run_another_adopted(
    tmp_path: Path,
) -> None:
    """Server A's lease lapsed (it stalled) and server B adopted the run; when A wakes and
    checkpoints, it must stop instead of taking the run back and answering it too."""
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(task: Task) -> str:
        started.set()
        await release.wait()
        return f"done: {task.instruction}"

    slow.__name__ = "work"
    path = tmp_path / "ledger.db"
    a_ledger, b_ledger = SQLiteLedger(path), SQLiteLedger(path)
    plan = Plan(steps=[Step(id="s", capability="research", instruction="one topic")])
    async with network(a_ledger, slow) as a:
        asking = asyncio.create_task(a.ask("one topic", plan=plan))
        await asyncio.wait_for(started.wait(), 10)
        run_id = a.ledger.runs()[-1]
        assert b_ledger.claim_run(run_id, "orchestrator-b", 60, force=True)  # B adopts it
        release.set()
        with pytest.raises(RunTakenOver):
            await asyncio.wait_for(asking, 10)
    row = b_ledger.load_run(run_id)
    assert row is not None and row.owner == "orchestrator-b" and row.status == "running"
    assert not b_ledger.decisions(run_id, "run_failed"), "A wrote an end for B's run"
