"""Remote A2A agents as specialists (``a2a:`` of an agent), with the ``a2a-sdk`` client.

When the network starts, the agent card is read from ``URL/.well-known/agent-card.json``; each
skill becomes a capability (its id, or the name ``a2a.skills`` maps it to). A step is sent as
one A2A message (its instruction, then the material of the steps it depends on), with the
skill in the message's metadata; the answer is the completed task's artifacts (or the
agent's reply message). A task the agent fails, rejects or cancels fails the step.

A task that ends ``input-required`` is a question for a person: it is asked through Rede's
human-in-the-loop (``ctx.ask("human", question)``: ``rede reply``, the A2A or HTTP API, or
``Network.approve``), and the answer is sent on the same task, up to ``MAX_INPUT_ROUNDS``
times. Every exchange is bounded by ``a2a.timeout_s``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from rede.agents.mcp import capability_name
from rede.agents.remote import adopt_capabilities, remote_spec
from rede.agents.specialists import Specialist, SpecialistSpec, TaskContext, render_context
from rede.config import A2aConfig, AgentConfig
from rede.errors import RemoteAgentError, one_line
from rede.extras import require
from rede.protocol.messages import Result, Task, Usage

MAX_INPUT_ROUNDS = 3
HUMAN = "human"
"""The capability a person answers on (see :mod:`rede.orchestration.human`)."""


@dataclass
class RemoteSkill:
    name: str
    """The skill's id on the remote agent."""
    capability: str
    description: str = ""


class A2aRemote:
    """A connection to one remote A2A agent: its card, its skills, an SDK client."""

    def __init__(self, agent: str, conf: A2aConfig) -> None:
        self.agent = agent
        self.conf = conf
        self.tools: dict[str, RemoteSkill] = {}
        """By capability (the name :meth:`Assembly.probe_remote` lists)."""
        self.card: Any = None
        self._http: Any = None
        self._client: Any = None

    async def start(self) -> dict[str, RemoteSkill]:
        httpx, client_mod = require("an 'a2a:' agent", "serve", "httpx", "a2a.client")
        url = self.conf.url.rstrip("/")
        self._http = httpx.AsyncClient(timeout=self.conf.timeout_s)
        try:
            async with asyncio.timeout(self.conf.timeout_s):
                resolver = client_mod.A2ACardResolver(self._http, url)
                self.card = await resolver.get_agent_card()
                config = client_mod.ClientConfig(httpx_client=self._http, streaming=False)
                self._client = await client_mod.create_client(self.card, client_config=config)
            self.tools = self._skills()
        except BaseException as exc:
            await self.aclose()
            if isinstance(exc, RemoteAgentError | asyncio.CancelledError):
                raise
            why = "no answer in time" if isinstance(exc, TimeoutError) else _why(exc)
            raise RemoteAgentError(
                f"A2A agent {self.agent!r}: cannot read its card at "
                f"{url}/.well-known/agent-card.json: {why}"
            ) from None
        return self.tools

    def _skills(self) -> dict[str, RemoteSkill]:
        skills = {s.id: s for s in self.card.skills}
        wanted = self.conf.skills or {sid: capability_name(sid) for sid in skills}
        missing = sorted(set(wanted) - set(skills))
        if missing or not wanted:
            raise RemoteAgentError(
                f"A2A agent {self.agent!r}: a2a.skills names {', '.join(missing) or 'nothing'}"
                f"; its card has {', '.join(sorted(skills)) or 'no skills'}"
            )
        return {cap: RemoteSkill(sid, cap, skills[sid].description) for sid, cap in wanted.items()}

    async def send(self, skill: RemoteSkill, text: str, ctx: TaskContext) -> tuple[str, dict]:
        """Send one step; its answer text and metadata. Questions go to a person."""
        from a2a.helpers import new_text_message
        from a2a.types import Role, SendMessageRequest

        task_id = context_id = None
        for _ in range(MAX_INPUT_ROUNDS + 1):
            message = new_text_message(
                text, role=Role.ROLE_USER, task_id=task_id, context_id=context_id
            )
            message.metadata.update({"skill": skill.name})
            last = await self._exchange(SendMessageRequest(message=message))
            state, answer, meta, task = _outcome(last)
            if state != "input_required":
                if state != "completed":
                    raise RemoteAgentError(
                        f"A2A agent {self.agent!r} {state} the step: {answer[:300] or 'no reason'}"
                    )
                return answer, meta
            task_id, context_id = task.id, task.context_id
            text = await ctx.ask(HUMAN, f"{self.agent} asks: {answer}")
        raise RemoteAgentError(
            f"A2A agent {self.agent!r} still asks for input after {MAX_INPUT_ROUNDS} answers"
        )

    async def _exchange(self, request: Any) -> Any:
        if self._client is None:
            raise RemoteAgentError(f"A2A agent {self.agent!r} is not connected")
        last = None
        try:
            async with asyncio.timeout(self.conf.timeout_s):
                async for response in self._client.send_message(request):
                    last = response
        except TimeoutError:
            raise RemoteAgentError(
                f"A2A agent {self.agent!r} did not answer within {self.conf.timeout_s:g}s "
                "(a2a.timeout_s)"
            ) from None
        except Exception as exc:
            raise RemoteAgentError(f"A2A agent {self.agent!r}: {_why(exc)}") from None
        if last is None:
            raise RemoteAgentError(f"A2A agent {self.agent!r} sent no response")
        return last

    async def aclose(self) -> None:
        client, self._client = self._client, None
        http, self._http = self._http, None
        if client is not None:
            await client.close()
        if http is not None:
            await http.aclose()


_STATES = {
    "TASK_STATE_COMPLETED": "completed",
    "TASK_STATE_FAILED": "failed",
    "TASK_STATE_CANCELED": "cancelled",
    "TASK_STATE_REJECTED": "rejected",
    "TASK_STATE_INPUT_REQUIRED": "input_required",
    "TASK_STATE_AUTH_REQUIRED": "asked for authentication in",
}


def _outcome(response: Any) -> tuple[str, str, dict[str, Any], Any]:
    """(state, text, metadata, task) of the last response to a message."""
    from a2a.helpers import get_artifact_text, get_message_text
    from a2a.types import TaskState
    from google.protobuf.json_format import MessageToDict

    if response.HasField("message"):
        msg = response.message
        return "completed", get_message_text(msg), MessageToDict(msg.metadata), None
    task = response.task
    name = TaskState.Name(task.status.state)
    state = _STATES.get(name, f"left in state {name} (unfinished)")
    said = get_message_text(task.status.message) if task.status.HasField("message") else ""
    if state != "completed":
        return state, said, {}, task
    texts = [get_artifact_text(a) for a in task.artifacts]
    meta: dict[str, Any] = {}
    for artifact in task.artifacts:
        meta.update(MessageToDict(artifact.metadata))
    return "completed", "\n".join(t for t in texts if t) or said, meta, task


def _why(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    lines = str(exc).strip().splitlines()
    return one_line(lines[0])[:300] if lines else type(exc).__name__


class A2aSpecialist(Specialist):
    """A remote A2A agent's skills as a specialist."""

    kind = "tool"

    def __init__(self, remote: A2aRemote) -> None:
        self.remote = remote
        self.model_name = f"a2a:{remote.agent}"

    async def handle(self, task: Task, ctx: TaskContext) -> Result:
        skill = self.remote.tools.get(task.capability)
        if skill is None:
            raise ValueError(f"agent {self.remote.agent!r} has no skill for {task.capability!r}")
        start = time.perf_counter()
        answer, meta = await self.remote.send(skill, task.instruction + render_context(task), ctx)
        cost = meta.get("cost_usd")
        usage = Usage(
            model=self.model_name,
            latency_s=time.perf_counter() - start,
            calls=1,
            cost_usd=float(cost) if isinstance(cost, int | float) else 0.0,
            source="tool",
        )
        data = {"confidence_method": "remote", "skill": skill.name, "remote": meta}
        return Result(output=answer, confidence=0.9, usage=usage, data=data)


async def open_a2a(agent: AgentConfig) -> A2aRemote:
    """Read an ``a2a:`` agent's card and give the agent its skills as capabilities."""
    assert agent.a2a is not None
    remote = A2aRemote(agent.name, agent.a2a)
    await remote.start()
    await adopt_capabilities(agent, set(remote.tools), "its A2A agent has no skill", remote.aclose)
    return remote


def a2a_spec(agent: AgentConfig, remote: A2aRemote) -> SpecialistSpec:
    return remote_spec(agent, A2aSpecialist(remote), quality=0.8)


__all__ = ["A2aRemote", "A2aSpecialist", "RemoteSkill", "a2a_spec", "open_a2a"]
