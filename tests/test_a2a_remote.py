"""Remote A2A agents as specialists, against real A2A servers on loopback: a Rede network
served over A2A (``rede.server.create_app``) and a small agent written with the a2a-sdk here
(skills, a failure, and a question answered through Rede's human-in-the-loop)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("a2a")

from a2a.helpers import new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
from a2a.utils.constants import PROTOCOL_VERSION_CURRENT, TransportProtocol
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from rede import Network
from rede.errors import RedeError, RemoteAgentError
from rede.protocol.messages import Event
from rede.server import ServerSettings, create_app
from rede.server.live import LiveServer, free_port
from serve_support import DEMO_YAML


def local(url: str, **a2a: Any) -> Network:
    return Network.from_dict(
        {
            "name": "local",
            "limits": {"step_retries": 0, "step_timeout_s": 30},
            "human": {"poll_s": 60},  # an answer given in this process wakes the run at once
            "agents": [{"name": "partner", "a2a": {"url": url, "timeout_s": 20, **a2a}}],
        }
    )


@pytest.fixture(scope="module")
def rede_server() -> Iterator[LiveServer]:
    port = free_port()
    net = Network.from_yaml(DEMO_YAML, time_scale=0.0)
    with LiveServer(create_app([net], ServerSettings(port=port)), port=port) as live:
        yield live


async def test_a_rede_network_served_over_a2a_is_a_specialist(rede_server: LiveServer) -> None:
    async with local(rede_server.url, skills={"arithmetic": "arithmetic"}) as net:
        assert net.config.agents[0].capabilities == ["arithmetic"]
        run = await net.ask("What is 6*7?")
    assert run.status == "ok" and run.answer == "6*7 = 42"
    step = run.steps[0]
    assert step.agent is not None and step.agent.startswith("partner")
    (result,) = [e.payload for e in run.envelopes if e.payload.kind == "result"]
    assert result.data["remote"]["run_id"].startswith("run-")  # the remote network's run


async def test_every_skill_of_the_card_becomes_a_capability(rede_server: LiveServer) -> None:
    async with local(rede_server.url) as net:
        caps = net.config.agents[0].capabilities
    assert caps == sorted(["plan", "research", "write", "critique", "synthesise", "arithmetic"])


class Greeter(AgentExecutor):
    """Echoes a message in capitals, fails on 'fail', takes 3 s on 'slow', and asks who is
    there on 'who'."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task = context.current_task
        text = context.get_user_input()
        follow_up = task is not None
        if task is None:
            from a2a.helpers import new_task_from_user_message

            assert context.message is not None
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)

        def say(words: str) -> Any:
            return new_text_message(words, context_id=task.context_id, task_id=task.id)

        if follow_up:
            answer = f"hello, {text.strip()}"
        elif "fail" in text:
            await updater.failed(say("cannot do that today"))
            return
        elif "slow" in text:
            await asyncio.sleep(3)  # a slow agent, not a wait for state
            answer = "too late"
        elif "who" in text:
            await updater.requires_input(say("What is your name?"))
            return
        else:
            answer = text.upper()
        await updater.add_artifact([new_text_part(answer, media_type="text/plain")], name="a")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


def greeter_card(url: str) -> AgentCard:
    skills = [
        AgentSkill(id=s, name=s, description=f"{s} things", tags=[s]) for s in ("shout", "greet")
    ]
    return AgentCard(
        name="greeter",
        description="A test agent written with the a2a-sdk.",
        supported_interfaces=[
            AgentInterface(
                url=url + "/rpc",
                protocol_binding=TransportProtocol.JSONRPC.value,
                protocol_version=PROTOCOL_VERSION_CURRENT,
            )
        ],
        version="1.0",
        capabilities=AgentCapabilities(streaming=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=skills,
    )


@pytest.fixture(scope="module")
def greeter() -> Iterator[LiveServer]:
    port = free_port()
    card = greeter_card(f"http://127.0.0.1:{port}")
    handler = DefaultRequestHandler(
        agent_executor=Greeter(), task_store=InMemoryTaskStore(), agent_card=card
    )
    app = Starlette(routes=create_jsonrpc_routes(handler, "/rpc") + create_agent_card_routes(card))
    with LiveServer(app, port=port) as live:
        yield live


async def test_an_sdk_agent_answers_and_fails_steps(greeter: LiveServer) -> None:
    async with local(greeter.url, skills={"shout": "shout"}) as net:
        run = await net.ask("quiet words")
        assert run.answer == "QUIET WORDS"
        with pytest.raises(RedeError, match="'partner' failed the step: cannot do that today"):
            await net.ask("please fail")


async def test_a_slow_agent_fails_the_step_in_bounded_time(greeter: LiveServer) -> None:
    async with local(greeter.url, skills={"shout": "shout"}, timeout_s=1) as net:
        with pytest.raises(RedeError, match=r"'partner' did not answer within 1s"):
            await net.ask("slow please")


async def test_input_required_is_asked_of_a_person(greeter: LiveServer) -> None:
    asked = asyncio.Event()
    events: list[Event] = []

    def observe(event: Event) -> None:
        events.append(event)
        if event.name == "waiting_for_human":
            asked.set()

    async with local(greeter.url, skills={"greet": "greet"}) as net:
        running = asyncio.create_task(net.ask("who is there?", run_id="run-who", observer=observe))
        async with asyncio.timeout(20):
            await asyncio.wait(
                {running, asyncio.ensure_future(asked.wait())}, return_when=asyncio.FIRST_COMPLETED
            )
        assert asked.is_set(), running.result()
        waiting = next(e for e in events if e.name == "waiting_for_human")
        assert "What is your name?" in str(waiting.data)
        net.approve("run-who", text="Ada")
        async with asyncio.timeout(20):
            run = await running
    assert run.answer == "hello, Ada"


async def test_unreachable_or_malformed_cards_are_one_line_errors() -> None:
    port = free_port()
    with pytest.raises(RemoteAgentError, match=r"cannot read its card at .*agent-card.json"):
        async with local(f"http://127.0.0.1:{port}"):
            pass

    async def card(request: Any) -> JSONResponse:
        return JSONResponse({"name": 3, "skills": "none"})

    bad = Starlette(routes=[Route("/.well-known/agent-card.json", card)])
    with LiveServer(bad, port=port) as live:
        with pytest.raises(RemoteAgentError, match="cannot read its card") as caught:
            async with local(live.url):
                pass
    assert "\n" not in str(caught.value)


async def test_skills_the_card_lacks(greeter: LiveServer) -> None:
    with pytest.raises(RemoteAgentError, match=r"names sing; its card has greet, shout"):
        async with local(greeter.url, skills={"sing": "sing"}):
            pass
