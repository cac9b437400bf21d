"""One run's shared state and bookkeeping, handed to the parts that run it.

The orchestrator's parts (the call path in :mod:`~rede.orchestration.call`, the reply reader in
:mod:`~rede.orchestration.replies`, the critique loop in :mod:`~rede.orchestration.review`)
take a :class:`RunState` instead of reaching into the orchestrator: the run record, the calls
waiting for replies, and the few ways to write down what happened (``emit`` an event,
``decide`` a decision, record an envelope ``sent`` or ``received``, ``account`` for usage).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rede.bus import Bus
from rede.config import DurableConfig, HumanConfig, LimitsConfig, StepFailureConfig
from rede.errors import RedeError, RunLimitExceeded, RunTakenOver
from rede.orchestration.durable import DoneStep, RunCheckpoint
from rede.orchestration.ledger import Ledger
from rede.orchestration.run import RunResult, StepRecord
from rede.protocol.messages import Critique, Envelope, Event, Result, Usage
from rede.protocol.topics import Topic
from rede.routing.budget import BudgetCap, Reservation
from rede.routing.router import Route, Router
from rede.runtime.registry import Registry

Observer = Callable[[Event], None]
EVENTS = Topic.events()


class ReaderStopped(Exception):
    """Set on the calls waiting for replies when the run's reply reader ends."""


@dataclass(frozen=True)
class Services:
    """What every run of one orchestrator shares."""

    bus: Bus
    registry: Registry
    router: Router
    ledger: Ledger
    limits: LimitsConfig
    sender: str
    """The orchestrator's id: the sender of its envelopes and its reply consumer name."""
    network_budget: BudgetCap
    publish_events: bool = True
    reply_topic: Topic | None = None
    """Where every run's replies come back (one topic per orchestrator); None: a topic per
    run, ``rede.reply.<run_id>``."""
    network: str = ""
    human: HumanConfig = field(default_factory=HumanConfig)
    durable: DurableConfig = field(default_factory=DurableConfig)
    on_step_failure: StepFailureConfig = field(default_factory=StepFailureConfig)
    answered: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)
    """(run, wait) -> set when a person's answer is written in this process, so the run
    waiting for it goes on at once (answers from other processes are polled for)."""


@dataclass
class RunState:
    """The state of one run and how its parts record what happens."""

    services: Services
    run_id: str
    request: str
    metadata: dict[str, Any]
    observer: Observer | None = None
    record: RunResult = field(init=False)
    reply_topic: Topic = field(init=False)
    budget: BudgetCap = field(init=False)
    futures: dict[tuple[str, int], asyncio.Future[Result | Critique]] = field(default_factory=dict)
    """(step, attempt) -> the reply awaited for it."""
    attempts: dict[str, int] = field(default_factory=dict)
    sent_to: dict[tuple[str, int], tuple[Route, str]] = field(default_factory=dict)
    """(step, attempt) -> the route and capability of the task sent, for late replies."""
    in_flight: dict[tuple[str, int], tuple[Topic, Envelope]] = field(default_factory=dict)
    """(step, attempt) -> the task sent and awaited, to send again if the bus loses it."""
    started_at: dict[tuple[str, int], float] = field(default_factory=dict)
    """(step, attempt) -> when (loop time) the agent said it started a task that waited."""
    replies: set[str] = field(default_factory=set)
    """Ids of the replies received, so a reply delivered twice is counted once."""
    calls: int = 0
    stranded: dict[tuple[str, int], Reservation] = field(default_factory=dict)
    """(step, attempt) -> what a lost call reserved, kept until its late reply or the end."""
    helpers: set[asyncio.Task[None]] = field(default_factory=set)
    """Tasks the run owns besides its steps (answering agents' questions)."""
    events: set[asyncio.Task[None]] = field(default_factory=set)
    reader: asyncio.Task[None] | None = None
    t0: float = 0.0
    checkpoint: RunCheckpoint = field(init=False)
    booked_before: frozenset[str] = frozenset()
    """Calls (``step/attempt``) whose usage a resumed run's checkpoint already holds."""
    clock: asyncio.Timeout | None = None
    """The run's wall-time limit, moved on by the time it waits for a person."""
    taken_over: bool = False
    """Another orchestrator holds the run now: this one writes nothing more of it."""

    def __post_init__(self) -> None:
        self.record = RunResult(run_id=self.run_id, request=self.request)
        self.reply_topic = self.services.reply_topic or Topic.reply(self.run_id)
        limits = self.services.limits
        self.budget = BudgetCap("run", limits.max_cost_usd, limits.max_tokens)
        self.checkpoint = RunCheckpoint(
            run_id=self.run_id,
            network=self.services.network,
            request=self.request,
            metadata=self.metadata,
        )

    # ------------------------------------------------------------------ checkpoints

    def save(self, lease_s: float = 0.0) -> None:
        """Write the checkpoint to the ledger (a SQLite ledger: to its file); ``lease_s``:
        hold a new run for that long from this same write. Raises :class:`RunTakenOver`
        (and sets ``taken_over``) if another orchestrator holds the run now."""
        cp, ledger, me = self.checkpoint, self.services.ledger, self.services.sender
        if not ledger.save_run(self.run_id, cp.network, cp.status, me, cp, lease_s):
            self.taken_over = True
            row = ledger.load_run(self.run_id)
            raise RunTakenOver(self.run_id, row.owner if row is not None else "?")

    def restore(self, cp: RunCheckpoint) -> None:
        """Take up a checkpoint: its finished steps, usage and calls are this run's."""
        cp.resumes += 1
        cp.status = "running" if not cp.waiting else "waiting"
        self.checkpoint = cp
        self.record.plan = cp.plan
        self.record.started_at = cp.started_at
        self.record.steps = [d.record for d in cp.done.values()]
        self.record.usage = cp.usage
        self.budget.spent_usd, self.budget.spent_tokens = cp.usage.cost_usd, cp.usage.total_tokens
        self.calls = cp.calls
        self.booked_before = frozenset(cp.accounted)

    @property
    def resumed(self) -> bool:
        return self.checkpoint.resumes > 0

    @property
    def limits(self) -> LimitsConfig:
        return self.services.limits

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    # ------------------------------------------------------------------ records

    @property
    def observed(self) -> bool:
        """Whether an event would reach anyone: the run's observer, or a subscriber to
        ``rede.events`` (a bus that cannot tell is assumed to have one)."""
        services = self.services
        return self.observer is not None or (
            services.publish_events and services.bus.listened(EVENTS)
        )

    def emit(self, name: str, **data: Any) -> None:
        """An event to the observer and, unless turned off, to ``rede.events``; not even made
        when neither is there (an in-process bus with no subscriber to ``rede.events``)."""
        services = self.services
        publish = services.publish_events and services.bus.listened(EVENTS)
        if self.observer is None and not publish:
            return
        event = Event(name=name, data={"run_id": self.run_id, **data})
        if self.observer is not None:
            self.observer(event)
        if publish:
            env = Envelope(run_id=self.run_id, sender=self.services.sender, payload=event)
            try:
                if self.services.bus.publish_now(EVENTS, env) is not None:
                    return
            except RedeError:
                return  # as _publish_event: an observer's event never fails the run
            task = asyncio.create_task(self._publish_event(env))
            self.events.add(task)
            task.add_done_callback(self.events.discard)

    async def _publish_event(self, env: Envelope) -> None:
        with contextlib.suppress(RedeError):
            await self.services.bus.publish(EVENTS, env)

    def reader_stopped(self, reader: asyncio.Task[None]) -> None:
        """The reply reader ended (the bus failed or the subscription closed): every call
        still waiting fails at once instead of waiting for its timeout."""
        for future in list(self.futures.values()):
            if not future.done():
                future.set_exception(ReaderStopped())

    def decide(self, name: str, **data: Any) -> None:
        self.services.ledger.record_decision(self.run_id, name, **data)
        self.record.decisions.append({"name": name, **data})

    def sent(self, env: Envelope) -> None:
        self.services.ledger.record_envelope("sent", env)
        self.record.envelopes.append(env)

    def received(self, env: Envelope) -> None:
        self.services.ledger.record_envelope("received", env)
        self.record.envelopes.append(env)

    def account(self, usage: Usage, key: str | None = None) -> None:
        """Book usage on the run and on both caps; the first cap crossed is raised. ``key``
        (``step/attempt``): a call a resumed run's checkpoint already booked is not booked
        again; every other keyed call is checkpointed as booked."""
        if key is not None:
            if key in self.booked_before:
                return
            self.checkpoint.accounted.append(key)
        self.record.usage = self.record.usage + usage
        self.checkpoint.usage, self.checkpoint.calls = self.record.usage, self.calls
        errors: list[RunLimitExceeded] = []
        for cap in (self.budget, self.services.network_budget):  # both book, even if one fails
            try:
                cap.charge(usage)
            except RunLimitExceeded as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def strand(self, step_id: str, reservation: Reservation) -> bool:
        """Keep a lost call's reservation on the caps (its reply may yet come and be booked)
        until :meth:`settle_late` or :meth:`release_stranded`; True."""
        reservation.strand()
        self.stranded[(step_id, self.attempts.get(step_id, 1) - 1)] = reservation
        return True

    def settle_late(self, key: tuple[str, int]) -> None:
        reservation = self.stranded.pop(key, None)
        if reservation is not None:
            reservation.release()

    def release_stranded(self) -> None:
        """The run is over: what its lost calls reserved is free again."""
        for key in list(self.stranded):
            self.settle_late(key)

    def affordable(self, cost_usd: float, tokens: int) -> bool:
        caps = (self.budget, self.services.network_budget)
        return all(c.shortfall(cost_usd, tokens) is None for c in caps)

    # ------------------------------------------------------------------ step records

    def new_record(
        self,
        step_id: str,
        capability: str,
        instruction: str,
        depends_on: list[str],
        *,
        kind: str = "step",
    ) -> StepRecord:
        rec = StepRecord(
            id=step_id,
            capability=capability,
            instruction=instruction,
            depends_on=depends_on,
            kind=kind,
        )
        self.record.steps.append(rec)
        return rec

    def finish(self, rec: StepRecord, result: Result | None) -> None:
        """Close a step record: ``result`` None means the step failed."""
        rec.status = "ok" if result is not None else "failed"
        if result is not None:
            rec.output = result.output
            rec.confidence = result.confidence
        rec.ended_at = self.elapsed()
        if result is not None:
            self.checkpoint.done[rec.id] = DoneStep(record=rec, result=result)
            self.save()
        if not self.observed:  # the usage dump below is not free
            return
        self.emit(
            "step_finished",
            step=rec.id,
            status=rec.status,
            agent=rec.agent,
            usage=rec.usage.model_dump(),
            confidence=rec.confidence,
            rounds=rec.rounds,
        )


__all__ = ["Observer", "ReaderStopped", "RunState", "Services"]
