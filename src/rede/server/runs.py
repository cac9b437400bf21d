"""Runs the server starts: one asyncio task each, its events numbered for SSE resumption,
cancel by id, a limit on how many run at once, and a summary in the ledger at the end.

Every entry point (OpenAI chat, the runs API, A2A) starts runs here, so limits, metrics and
history are the same whichever door a request came through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from rede import Event, Network, RedeError, RunResult, Usage
from rede.errors import RunTakenOver

log = logging.getLogger("rede.server")

RunStatus = Literal["running", "ok", "failed", "cancelled"]


class Ledger(Protocol):
    """What the server needs of a network's ledger (``net.ledger``): only its public
    queries, so this package does not depend on where the ledger module lives."""

    def record_decision(self, run_id: str, name: str, **data: Any) -> None: ...
    def decisions(self, run_id: str, name: str | None = None) -> list[Any]: ...
    def entries(self, run_id: str | None = None) -> list[Any]: ...
    def runs(self) -> list[str]: ...
    def load_run(self, run_id: str) -> Any: ...
    def orphans(self, network: str | None = None) -> list[str]: ...
    def end_run(self, run_id: str, status: str) -> None: ...


SERVED = "served"
"""The ledger decision that closes a served run: its summary, for the history."""


class UnknownModel(RedeError):
    def __init__(self, model: str, known: list[str]) -> None:
        super().__init__(f"the model {model!r} does not exist; this server has: {', '.join(known)}")
        self.model = model


class AtCapacity(RedeError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the server is running its limit of {limit} runs at once; retry shortly")


class Draining(RedeError):
    def __init__(self) -> None:
        super().__init__("the server is shutting down and starts no new runs")


class EmptyRequest(RedeError):
    def __init__(self) -> None:
        super().__init__("the request is empty: send the text the network should answer")


class UnknownRun(RedeError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r} on this server or in its ledger")


@dataclass
class RunEvent:
    seq: int
    name: str
    data: dict[str, Any]
    at: float

    def wire(self) -> dict[str, Any]:
        return {"seq": self.seq, "name": self.name, "at": self.at, "data": self.data}


@dataclass
class ServedRun:
    """A run this server started: its live events and, at the end, its record."""

    id: str
    model: str
    request: str
    source: str
    created: float = field(default_factory=time.time)
    status: RunStatus = "running"
    error: str | None = None
    result: RunResult | None = None
    usage: Usage = field(default_factory=Usage)
    """Summed from ``step_finished`` events while running; the run's own usage at the end."""
    events: list[RunEvent] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def done(self) -> bool:
        return self.status != "running"

    def add(self, name: str, data: dict[str, Any]) -> None:
        self.events.append(RunEvent(len(self.events) + 1, name, data, time.time()))
        self._changed.set()
        self._changed = asyncio.Event()

    def observe(self, event: Event) -> None:
        """The orchestrator's observer: every event of the run, in order."""
        data = {k: v for k, v in event.data.items() if k != "run_id"}
        if event.name == "step_finished":
            self.usage = self.usage + Usage.model_validate(data.get("usage") or {})
        self.add(event.name, data)

    async def follow(self, after: int = 0) -> AsyncIterator[RunEvent]:
        """Events with ``seq > after``, live, until the run's last event."""
        sent = after
        while True:
            changed = self._changed
            while sent < len(self.events):
                sent += 1
                yield self.events[sent - 1]
            if self.done:
                return
            await changed.wait()

    async def wait(self) -> None:
        while not self.done:
            await self._changed.wait()

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "rede.run",
            "model": self.model,
            "source": self.source,
            "created": int(self.created),
            "request": self.request,
            "status": self.status,
            "error": self.error,
            "answer": self.result.answer if self.result is not None else None,
            "partial": self.result is not None and self.result.partial,
            "missing": [m.model_dump() for m in self.result.missing] if self.result else [],
            "usage": _usage(self.usage),
            "wall_time_s": self.result.wall_time_s if self.result is not None else None,
        }

    def record(self) -> dict[str, Any]:
        """The whole run: its summary, and the run record (plan, steps, decisions)."""
        out = self.summary()
        if self.result is not None:
            out["run"] = self.result.summary()
        out["events"] = len(self.events)
        return out


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "cost_usd": usage.cost_usd,
        "calls": usage.calls,
        "source": usage.source,
    }


def describe(ledger: Ledger, run_id: str) -> dict[str, Any]:
    """A recorded run's summary: its ``served`` entry, else what its entries tell (runs of
    ``rede run`` or of another process)."""
    served = ledger.decisions(run_id, SERVED)
    row = ledger.load_run(run_id)
    if served and (row is None or row.status not in ("running", "waiting")):
        return {**served[-1].data, "id": run_id}
    entries = ledger.entries(run_id)
    if not entries:
        raise UnknownRun(run_id)
    request = next(
        (
            e.data["payload"].get("request")
            for e in entries
            if e.kind == "envelope" and e.data.get("payload", {}).get("kind") == "task"
        ),
        None,
    )
    failed = any(e.name == "run_failed" for e in entries)
    if row is not None:  # a checkpointed run: its status, and what it waits for
        state = row.state
        return {
            "id": run_id,
            "object": "rede.run",
            "model": row.network or None,
            "source": "ledger",
            "created": int(entries[0].at),
            "request": state.get("request"),
            "status": row.status,
            "waiting_for": sorted(state.get("waiting") or {}),
            "error": state.get("error"),
            "answer": state.get("answer") or None,
            "partial": any(e.name == "run_partial" for e in entries),
            "usage": _usage(Usage.model_validate(state["usage"])) if state.get("usage") else None,
            "wall_time_s": entries[-1].at - entries[0].at,
        }
    return {
        "id": run_id,
        "object": "rede.run",
        "model": None,
        "source": "ledger",
        "created": int(entries[0].at),
        "request": request,
        "status": "failed" if failed else "unknown",
        "error": next((e.data.get("error") for e in entries if e.name == "run_failed"), None),
        "answer": None,
        "usage": None,
        "wall_time_s": entries[-1].at - entries[0].at,
    }


Hook = Callable[[ServedRun], None]


class RunManager:
    """Owns every run task; ``aclose`` lets them finish within a deadline, then cancels."""

    def __init__(
        self,
        networks: dict[str, Network],
        ledger: Ledger,
        *,
        max_concurrent: int = 256,
        keep: int = 1000,
        on_finish: Hook | None = None,
        on_start: Hook | None = None,
    ) -> None:
        self.networks = networks
        self.ledger = ledger
        self.max_concurrent = max_concurrent
        self.keep = keep
        self.on_finish = on_finish
        self.on_start = on_start
        self.runs: OrderedDict[str, ServedRun] = OrderedDict()
        self.active = 0
        self.draining = False

    def network(self, model: str) -> Network:
        net = self.networks.get(model)
        if net is None:
            raise UnknownModel(model, sorted(self.networks))
        return net

    def start(self, model: str, request: str, *, source: str) -> ServedRun:
        """Start a run now (checks first: model, draining, capacity) and return it."""
        net = self.network(model)
        if not request.strip():
            raise EmptyRequest()
        if self.draining:
            raise Draining()
        if self.active >= self.max_concurrent:
            raise AtCapacity(self.max_concurrent)
        run = ServedRun(
            id=f"run-{uuid.uuid4().hex[:16]}", model=model, request=request, source=source
        )
        net.admission.reserve(run.id)  # Busy (429) over the network's limits.max_runs
        if net.orchestrator is not None:  # durable before the client hears of it
            try:
                net.orchestrator.accept(run.id, request)
            except BaseException:
                net.admission.unreserve(run.id)
                raise
        self.runs[run.id] = run
        self.active += 1
        run.task = asyncio.create_task(self._execute(net, run), name=f"rede-{run.id}")
        if self.on_start is not None:
            self.on_start(run)
        return run

    def adopt(self, net: Network, run_id: str, request: str) -> ServedRun:
        """Resume a run of ``net`` from its checkpoint (its process died) and serve it like
        a run started here: live events, cancel, history."""
        run = ServedRun(id=run_id, model=net.config.name, request=request, source="resumed")
        self.runs[run.id] = run
        self.active += 1
        run.task = asyncio.create_task(self._execute(net, run, resume=True), name=f"rede-{run_id}")
        if self.on_start is not None:
            self.on_start(run)
        return run

    async def adopt_orphans(self, net: Network) -> None:
        """Resume ``net``'s orphaned runs now and every ``durable.lease_s`` (their holder
        stopped renewing its lease: another server, or this one before a restart)."""
        while not self.draining:
            for run_id in net.ledger.orphans(net.config.name):
                if run_id in self.runs and not self.runs[run_id].done:
                    continue
                holder = net.orchestrator
                row = net.ledger.load_run(run_id)
                lease = net.config.durable.lease_s
                if holder is None or row is None:
                    continue
                if net.ledger.claim_run(run_id, holder.id, lease):  # one server takes it
                    self.adopt(net, run_id, str(row.state.get("request", "")))
            await asyncio.sleep(net.config.durable.lease_s)

    async def _execute(self, net: Network, run: ServedRun, resume: bool = False) -> None:
        started = time.perf_counter()
        status: RunStatus | Literal["taken_over"] = "cancelled"
        try:
            run.result = await (
                net.resume(run.id, observer=run.observe)
                if resume
                else net.ask(run.request, observer=run.observe, run_id=run.id)
            )
            run.usage = run.result.usage
            status = "ok"
        except RunTakenOver as exc:  # another server runs it now: its record is the ledger's
            run.error, status = str(exc), "taken_over"
        except RedeError as exc:
            run.result, run.error, status = exc.run, str(exc), "failed"
            if exc.run is not None:
                run.usage = exc.run.usage
        except asyncio.CancelledError:
            run.error = run.error or "cancelled"
            self.ledger.record_decision(run.id, "run_cancelled", reason=run.error)
            if not self.draining:  # cancelled by a user: ended; at shutdown it stays resumable
                self.ledger.end_run(run.id, "failed")
            raise
        except Exception as exc:  # a bug below: the client gets a 500 and the run says why
            log.exception("run %s failed unexpectedly", run.id)
            run.error, status = f"{type(exc).__name__}: {exc}", "failed"
        finally:
            if net.orchestrator is not None:
                net.orchestrator.release(run.id)
            if status == "taken_over":
                self._forget(run)
            else:
                self._close(run, status, time.perf_counter() - started)

    def _forget(self, run: ServedRun) -> None:
        """A run another server took over: no record of its end here (the new holder
        writes it); ``describe`` reads it from the ledger from now on."""
        log.warning("%s", run.error)
        self.active -= 1
        self.runs.pop(run.id, None)
        run.status = "failed"  # ends its followers here; they may follow it on the new holder
        run.add("run_closed", {"status": "taken_over", "error": run.error})

    def _close(self, run: ServedRun, status: RunStatus, wall: float) -> None:
        run.status = status
        self.active -= 1
        summary = run.summary()
        summary["wall_time_s"] = summary["wall_time_s"] or wall
        self.ledger.record_decision(run.id, SERVED, **summary)
        keys = ("status", "error", "answer", "partial", "missing", "usage")
        run.add("run_closed", {k: summary[k] for k in keys})
        if self.on_finish is not None:
            self.on_finish(run)
        while len(self.runs) > self.keep:  # forget the oldest finished runs
            oldest = next((r for r in self.runs.values() if r.done), None)
            if oldest is None:
                break
            del self.runs[oldest.id]

    def get(self, run_id: str) -> ServedRun | None:
        return self.runs.get(run_id)

    def cancel_nowait(self, run_id: str, reason: str) -> ServedRun:
        """Ask the run to stop; it is recorded as cancelled once its task has unwound."""
        run = self.runs.get(run_id)
        if run is None:
            raise UnknownRun(run_id)
        if not run.done and run.task is not None and not run.task.cancelling():
            run.error = reason
            run.task.cancel()
        return run

    async def cancel(self, run_id: str, reason: str = "cancelled by request") -> ServedRun:
        run = self.cancel_nowait(run_id, reason)
        if run.task is not None:
            await asyncio.gather(run.task, return_exceptions=True)
        return run

    # ------------------------------------------------------------------ history

    def history(self, *, limit: int = 20, before: str | None = None) -> tuple[list[dict], bool]:
        """Runs newest first, from the ledger (every run recorded there, served or not)."""
        ids = list(reversed(self.ledger.runs()))
        if before is not None:
            ids = ids[ids.index(before) + 1 :] if before in ids else []
        page = ids[:limit]
        return [self.describe(rid) for rid in page], len(ids) > limit

    def describe(self, run_id: str) -> dict[str, Any]:
        """A run's summary: live from memory, else its ``served`` entry, else what the
        ledger's entries tell (runs started by ``rede run`` or another process)."""
        live = self.runs.get(run_id)
        if live is not None:
            return live.summary()
        return describe(self.ledger, run_id)

    def decisions(self, run_id: str) -> list[dict[str, Any]]:
        return [
            {"name": e.name, "at": e.at, **e.data}
            for e in self.ledger.decisions(run_id)
            if e.name != SERVED
        ]

    # ------------------------------------------------------------------ shutdown

    async def aclose(self, timeout_s: float) -> None:
        """Start no more runs; let running ones finish within ``timeout_s``; cancel the rest."""
        self.draining = True
        tasks = [r.task for r in self.runs.values() if r.task is not None and not r.done]
        if tasks:
            log.info("waiting up to %gs for %d run(s) to finish", timeout_s, len(tasks))
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for run in self.runs.values():
                if run.task in pending:
                    run.error = f"the server shut down; not finished within {timeout_s:g}s"
                    run.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*pending, return_exceptions=True)
