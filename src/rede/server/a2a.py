"""A2A v1.0 with the official ``a2a-sdk``: each network is an A2A agent.

The agent card (skills from the network's capabilities, ``supportedInterfaces`` naming the
JSON-RPC endpoint) is at ``/.well-known/agent-card.json`` for the first network and at
``/a2a/<network>/.well-known/agent-card.json`` for each; the JSON-RPC binding (send a
message, stream a task, get and cancel tasks) is at ``/a2a/<network>``. A message starts a
run; the task reports each finished step as a ``working`` status update and ends with the
answer as an artifact (with the run id in its metadata).
"""

from __future__ import annotations

from typing import Any

from a2a.helpers import new_task_from_user_message, new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentProvider,
    AgentSkill,
    TaskState,
)
from a2a.utils.constants import PROTOCOL_VERSION_CURRENT, TransportProtocol
from starlette.routing import BaseRoute

from rede import Network, RedeError, __version__
from rede.server.runs import RunManager, ServedRun

_CAPABILITY_TEXT = {
    "plan": "Plans a request into steps for the network's agents.",
    "research": "Researches a question.",
    "write": "Writes a draft.",
    "critique": "Reviews a draft and says what to improve.",
    "synthesise": "Writes the final answer from the steps' results.",
    "arithmetic": "Evaluates arithmetic exactly.",
}


def agent_card(name: str, net: Network, url: str) -> AgentCard:
    skills = [
        AgentSkill(
            id=cap,
            name=cap,
            description=_CAPABILITY_TEXT.get(cap, f"The network's {cap!r} capability."),
            tags=[cap, "rede"],
            input_modes=["text/plain"],
            output_modes=["text/plain"],
        )
        for cap in sorted(net.config.capabilities)
    ]
    return AgentCard(
        name=name,
        description=net.config.description
        or f"A Rede network of {len(net.config.agents)} agents answering as one.",
        supported_interfaces=[
            AgentInterface(
                url=url,
                protocol_binding=TransportProtocol.JSONRPC.value,
                protocol_version=PROTOCOL_VERSION_CURRENT,
            )
        ],
        provider=AgentProvider(organization="Rede", url=url),
        version=__version__,
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=skills,
    )


class NetworkExecutor(AgentExecutor):
    """Runs the network on the message's text and reports the run on the task."""

    def __init__(self, runs: RunManager, model: str) -> None:
        self.runs = runs
        self.model = model
        self.by_task: dict[str, str] = {}
        self.paused: dict[str, tuple[str, dict[str, Any], int]] = {}
        """task id -> (run id, the wait, the event it came with): tasks whose run waits for
        a person; the next message on the task answers it."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task = context.current_task
        if task is None:
            assert context.message is not None
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)

        def say(text: str):  # type: ignore[no-untyped-def]
            return new_text_message(text, context_id=task.context_id, task_id=task.id)

        paused = self.paused.pop(task.id, None)
        if paused is not None:  # the reply to the question the run asked a person
            run_id, wait, after = paused
            run = self.runs.get(run_id)
            if run is None:
                await updater.failed(say(f"run {run_id} is no longer held by this server"))
                return
            self._answer(run_id, wait, context.get_user_input())
        else:
            try:
                run = self.runs.start(self.model, context.get_user_input(), source="a2a")
            except RedeError as exc:
                await updater.reject(say(str(exc)))
                return
            after = 0
            await updater.start_work(say(f"run {run.id} started"))
        self.by_task[task.id] = run.id
        try:
            await self._report(run, after, task.id, updater, say)
        finally:
            self.by_task.pop(task.id, None)
            if not run.done and task.id not in self.paused:  # the task was cancelled
                self.runs.cancel_nowait(run.id, "the A2A task was cancelled")

    async def _report(self, run: ServedRun, after: int, task_id: str, updater, say) -> None:  # type: ignore[no-untyped-def]
        """Follow the run on the task until it ends, or until it waits for a person (the
        task then asks for input: the next message on it is the answer)."""
        async for event in run.follow(after):
            d = event.data
            if event.name == "step_finished":
                await updater.update_status(
                    TaskState.TASK_STATE_WORKING,
                    say(f"step {d.get('step')} {d.get('status')} by {d.get('agent')}"),
                    metadata={"run_id": run.id, "event": event.wire()},
                )
            elif event.name == "waiting_for_human":
                self.paused[task_id] = (run.id, d, event.seq)
                how = "" if d.get("kind") == "input" else " (reply 'reject: why' to reject)"
                shown = f"\n\n{d['show']}" if d.get("show") and d.get("kind") != "input" else ""
                await updater.requires_input(say(f"{d['prompt']}{how}{shown}"))
                return
        if run.status == "ok" and run.result is not None:
            await updater.add_artifact(
                [new_text_part(run.result.answer, media_type="text/plain")],
                name="answer",
                metadata={
                    "run_id": run.id,
                    "total_tokens": run.usage.total_tokens,
                    "cost_usd": run.usage.cost_usd,
                },
            )
            await updater.complete()
        elif run.status == "cancelled":
            await updater.cancel(say(f"run {run.id} was cancelled: {run.error}"))
        else:
            await updater.failed(say(f"run {run.id} failed: {run.error}"))

    def _answer(self, run_id: str, wait: dict[str, Any], text: str) -> None:
        """A message on a task waiting for a person: the answer to an agent's question, or
        an approval (a message starting with 'reject' or 'no' rejects, the rest its reason)."""
        net = self.runs.networks[self.model]
        if wait.get("kind") == "input":
            net.approve(run_id, wait["step"], text=text, by="a2a")
            return
        verdict, _, why = text.strip().partition(":")
        rejected = verdict.strip().lower() in ("reject", "no", "rejected")
        net.approve(run_id, wait["step"], approved=not rejected, reason=why.strip(), by="a2a")

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        run_id = self.by_task.get(context.task_id or "")
        if run_id is not None and self.runs.get(run_id) is not None:
            await self.runs.cancel(run_id, "the A2A task was cancelled")
        if context.task_id and context.context_id:
            updater = TaskUpdater(event_queue, context.task_id, context.context_id)
            await updater.cancel()


def routes(runs: RunManager, base_url: str) -> list[BaseRoute]:
    out: list[BaseRoute] = []
    for i, (name, net) in enumerate(runs.networks.items()):
        rpc = f"/a2a/{name}"
        card = agent_card(name, net, base_url + rpc)
        handler = DefaultRequestHandler(
            agent_executor=NetworkExecutor(runs, name),
            task_store=InMemoryTaskStore(),
            agent_card=card,
        )
        out += create_jsonrpc_routes(handler, rpc)
        out += create_agent_card_routes(card, card_url=f"{rpc}/.well-known/agent-card.json")
        if i == 0:
            out += create_agent_card_routes(card)
    return out
