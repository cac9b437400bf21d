"""A2A v1.0 over real HTTP, checked with the official ``a2a-sdk`` client: the agent card
(skills from the network's capabilities, the JSON-RPC interface), a message answered
(non-streaming) and a task streamed with a status update per step and the answer as an
artifact."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.helpers import get_artifact_text, new_text_message
from a2a.types import Role, SendMessageRequest, TaskState

from rede import Network
from rede.server import ServerSettings, create_app
from rede.server.live import LiveServer, free_port
from serve_support import DEMO_YAML

DEMO = "research-team"


@pytest.fixture(scope="module")
def server() -> AsyncIterator[LiveServer]:
    port = free_port()
    net = Network.from_yaml(DEMO_YAML, time_scale=0.0)
    with LiveServer(create_app([net], ServerSettings(port=port)), port=port) as live:
        yield live


async def test_agent_card_has_the_networks_skills_and_interface(server: LiveServer) -> None:
    async with httpx.AsyncClient() as http:
        card = await A2ACardResolver(http, server.url).get_agent_card()
        raw = (await http.get(server.url + "/.well-known/agent-card.json")).json()
    assert card.name == DEMO
    assert {s.id for s in card.skills} == {
        "plan",
        "research",
        "write",
        "critique",
        "synthesise",
        "arithmetic",
    }
    (iface,) = card.supported_interfaces
    assert iface.url == f"{server.url}/a2a/{DEMO}"
    assert iface.protocol_binding == "JSONRPC" and iface.protocol_version == "1.0"
    assert card.capabilities.streaming
    assert "supportedInterfaces" in raw  # the v1.0 JSON names


def _request(text: str) -> SendMessageRequest:
    return SendMessageRequest(message=new_text_message(text, role=Role.ROLE_USER))


async def test_a_message_is_answered_by_a_run(server: LiveServer) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        config = ClientConfig(httpx_client=http, streaming=False)
        client = await create_client(server.url, client_config=config)
        responses = [r async for r in client.send_message(_request("What is 6*7?"))]
    task = responses[-1].task
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    (artifact,) = task.artifacts
    assert get_artifact_text(artifact) == "6*7 = 42"
    run_id = artifact.metadata["run_id"]
    async with httpx.AsyncClient() as http:
        record = (await http.get(f"{server.url}/v1/runs/{run_id}")).json()
    assert record["source"] == "a2a" and record["status"] == "ok"


async def test_a_task_streams_its_steps_and_the_answer(server: LiveServer) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        config = ClientConfig(httpx_client=http, streaming=True)
        client = await create_client(server.url, client_config=config)
        events = [r async for r in client.send_message(_request("Compare cats and dogs as pets"))]
    states = [e.status_update.status.state for e in events if e.HasField("status_update")]
    assert states[0] == TaskState.TASK_STATE_WORKING
    assert states[-1] == TaskState.TASK_STATE_COMPLETED
    texts = [
        part.text
        for e in events
        if e.HasField("status_update")
        for part in e.status_update.status.message.parts
    ]
    steps = [t for t in texts if t.startswith("step ")]
    assert len(steps) >= 4  # plan, research x2+, write, synthesis
    (answer,) = [e.artifact_update.artifact for e in events if e.HasField("artifact_update")]
    assert get_artifact_text(answer).startswith("[simulated")


async def test_a_run_waiting_for_a_person_asks_for_input_and_the_next_message_answers(
    tmp_path: Path,
) -> None:
    from rede.config import HumanConfig, NetworkConfig

    conf = NetworkConfig.from_yaml(DEMO_YAML)
    conf = conf.model_copy(update={"human": HumanConfig(approve_plan=True, poll_s=0.05)})
    port = free_port()
    net = Network(conf, time_scale=0.0)
    with LiveServer(create_app([net], ServerSettings(port=port)), port=port) as live:
        async with httpx.AsyncClient(timeout=60) as http:
            config = ClientConfig(httpx_client=http, streaming=True)
            client = await create_client(live.url, client_config=config)
            first = [r async for r in client.send_message(_request("Compare cats and dogs"))]
            paused = [e.status_update for e in first if e.HasField("status_update")][-1]
            assert paused.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
            assert "Approve the plan?" in paused.status.message.parts[0].text
            reply = new_text_message(
                "yes", role=Role.ROLE_USER, task_id=paused.task_id, context_id=paused.context_id
            )
            rest = [r async for r in client.send_message(SendMessageRequest(message=reply))]
    states = [e.status_update.status.state for e in rest if e.HasField("status_update")]
    assert states[-1] == TaskState.TASK_STATE_COMPLETED, states
    (answer,) = [e.artifact_update.artifact for e in rest if e.HasField("artifact_update")]
    run_id = answer.metadata["run_id"]
    (answered,) = net.ledger.decisions(run_id, "human_answer")
    assert answered.data["by"] == "a2a" and answered.data["approved"] is True
