"""The runs API: start a run and get its id at once, read its record, follow its events
live (SSE, resumable with ``Last-Event-ID``), list the history from the ledger, cancel.
Also ``/v1/networks``: each served network's agents, live, for the web page."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from rede import Network, RedeError
from rede.server.http import APIError
from rede.server.runs import RunManager, ServedRun, UnknownRun


class RunRequest(BaseModel):
    input: str = Field(min_length=1, description="The request the network answers.")
    model: str | None = Field(None, description="The network (default: the first served).")


class Answer(BaseModel):
    """A person's answer to a paused run (``human:`` in the network YAML)."""

    step: str | None = Field(
        None, description="'plan', a step id, or none: what the run waits for, if one thing."
    )
    approved: bool = Field(True, description="False rejects the plan or the step's output.")
    reason: str = Field("", description="Why; recorded in the ledger.")
    text: str = Field("", description="The answer to a question, or a step's output to use.")
    by: str = Field("api", description="Who answers; recorded in the ledger.")


def _events(run: ServedRun, after: int) -> AsyncIterator[str]:
    async def gen() -> AsyncIterator[str]:
        yield "retry: 1000\n\n"
        async for event in run.follow(after):
            data = json.dumps(event.wire(), separators=(",", ":"), default=str)
            yield f"id: {event.seq}\nevent: {event.name}\ndata: {data}\n\n"

    return gen()


def describe_network(name: str, net: Network) -> dict[str, Any]:
    """The network as the page shows it: agents with capabilities, replicas, health, load,
    model and price, from its configuration and the live registry."""
    views = {v.name: v for v in net.registry.agents()}
    agents = []
    for agent in net.config.agents:
        view = views.get(agent.name)
        card = view.card if view is not None else None
        age = None
        if card is not None:
            age = max(0.0, time.time() - card.last_heartbeat.timestamp())
        model = net.config.models.get(agent.model) if agent.model else None
        agents.append(
            {
                "name": agent.name,
                "kind": "tool" if agent.tool else "llm",
                "capabilities": agent.capabilities,
                "model": agent.model,
                "spec": model.spec if model is not None else None,
                "price_in_per_1k": card.price_in_per_1k if card else None,
                "price_out_per_1k": card.price_out_per_1k if card else None,
                "replicas": view.replicas if view is not None else 0,
                "healthy": view is not None,
                "heartbeat_age_s": age,
                "load": view.load if view is not None else 0,
                "concurrency": agent.concurrency,
                "in_flight": net.router.in_flight.get(agent.name, 0),
                "latency_s": card.latency_s if card else None,
                "success_rate": card.success_rate if card else None,
                "simulated": card.simulated if card else None,
            }
        )
    return {
        "id": name,
        "object": "rede.network",
        "description": net.config.description,
        "capabilities": sorted(net.config.capabilities),
        "routing": net.config.routing.strategy,
        "bus": net.bus.url if net.bus is not None else None,
        "agents": agents,
        "admission": _admission(net),
    }


def _admission(net: Network) -> dict[str, Any]:
    """Runs at once here and the limits on them and on a step's wait for a slot."""
    adm, limits = net.admission, net.config.limits
    return {
        "max_runs": adm.max_runs,
        "admit_wait_s": adm.wait_s,
        "running": adm.running,
        "waiting": adm.waiting,
        "refused": adm.refused,
        "slot_wait_s": limits.slot_wait_s,
        "step_timeout_s": limits.step_timeout_s,
    }


def router(runs: RunManager) -> APIRouter:
    api = APIRouter(tags=["Runs"])

    def live(run_id: str) -> ServedRun:
        run = runs.get(run_id)
        if run is None:
            try:
                runs.describe(run_id)
            except UnknownRun as exc:
                raise APIError(404, str(exc), "run_not_found") from None
            raise APIError(
                404,
                f"run {run_id} is in the ledger but its live events are no longer held; "
                f"GET /v1/runs/{run_id} has its record",
                "events_gone",
            )
        return run

    @api.post("/v1/runs", status_code=202, summary="Start a run; returns its id at once")
    async def start(body: RunRequest, response: Response) -> dict[str, Any]:
        model = body.model or next(iter(runs.networks))
        run = runs.start(model, body.input, source="runs")
        response.headers["Location"] = f"/v1/runs/{run.id}"
        response.headers["X-Rede-Run-Id"] = run.id
        return run.summary()

    @api.get("/v1/runs", summary="Run history from the ledger, newest first")
    async def history(
        limit: int = Query(20, ge=1, le=200),
        before: str | None = Query(None, description="A run id: the page after it."),
    ) -> dict[str, Any]:
        page, more = runs.history(limit=limit, before=before)
        return {
            "object": "list",
            "data": page,
            "has_more": more,
            "next_before": page[-1]["id"] if more and page else None,
        }

    @api.get("/v1/runs/{run_id}", summary="A run's record: summary, plan, steps, decisions")
    async def get(run_id: str) -> dict[str, Any]:
        run = runs.get(run_id)
        if run is not None:
            return {**run.record(), "decisions": runs.decisions(run_id)}
        try:
            summary = runs.describe(run_id)
        except UnknownRun as exc:
            raise APIError(404, str(exc), "run_not_found") from None
        return {**summary, "decisions": runs.decisions(run_id)}

    @api.get(
        "/v1/runs/{run_id}/events",
        summary="The run's events as SSE; reconnect with Last-Event-ID to resume",
        response_class=StreamingResponse,
    )
    async def events(
        run_id: str,
        last_event_id: str | None = Header(None),
        after: int = Query(0, ge=0, description="Start after this event (as Last-Event-ID)."),
    ) -> StreamingResponse:
        run = live(run_id)
        if last_event_id is not None:
            if not last_event_id.isdigit():
                raise APIError(400, "Last-Event-ID must be an event number", "bad_event_id")
            after = int(last_event_id)
        return StreamingResponse(
            _events(run, after),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @api.post("/v1/runs/{run_id}/cancel", summary="Cancel a running run")
    async def cancel(run_id: str) -> dict[str, Any]:
        if runs.get(run_id) is None:
            live(run_id)  # 404 with the reason
        run = await runs.cancel(run_id)
        return run.summary()

    @api.post("/v1/runs/{run_id}/answer", summary="Approve, reject or answer a paused run")
    async def answer(run_id: str, body: Answer) -> dict[str, Any]:
        net = next(iter(runs.networks.values()))  # the served networks share one ledger
        try:
            wait = net.approve(
                run_id,
                body.step,
                approved=body.approved,
                reason=body.reason,
                text=body.text,
                by=body.by,
            )
        except RedeError as exc:
            raise APIError(409, str(exc), "not_waiting") from None
        return {"id": run_id, "answered": wait}

    @api.get("/v1/networks", tags=["Networks"], summary="The served networks, live")
    async def networks() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [describe_network(n, net) for n, net in runs.networks.items()],
        }

    @api.get("/v1/networks/{model}", tags=["Networks"], summary="One served network, live")
    async def network(model: str) -> dict[str, Any]:
        if model not in runs.networks:
            raise APIError(404, f"no network {model!r} is served", "model_not_found")
        return describe_network(model, runs.networks[model])

    return api
