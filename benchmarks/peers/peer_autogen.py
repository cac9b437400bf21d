"""AutoGen (autogen-agentchat): a ``GraphFlow`` team built with ``DiGraphBuilder``.

The AgentChat docs recommend ``GraphFlow`` when a team must follow a set order with parallel
branches and a conditional loop ("Workflows (GraphFlow)"); ``RoundRobinGroupChat`` and
``SelectorGroupChat`` cannot fan out to two researchers at once. Like every AgentChat team
it is a group chat: each agent's model context receives every message of the thread.

planner -> (researcher_1, researcher_2) -> writer -> critic -> writer (REVISE) | final (APPROVED).

A GraphFlow needs a leaf node to finish on, as in the docs' loop example; ``final`` is a
custom agent without a model (the docs' "Custom Agents" pattern) that hands back the approved
draft, so the loop's exit costs no model call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from autogen_agentchat.agents import AssistantAgent, BaseChatAgent
from autogen_agentchat.base import Response, TaskResult
from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.messages import BaseChatMessage, TextMessage
from autogen_agentchat.teams import DiGraphBuilder, GraphFlow
from autogen_core import CancellationToken
from autogen_core.models import ModelInfo
from autogen_ext.models.openai import OpenAIChatCompletionClient
from workflow import (
    CRITIC,
    CRITIC_FORMAT,
    PLANNER,
    PLANNER_FORMAT,
    RESEARCHER,
    REVISE_MARK,
    WRITER,
    Ask,
    research_instruction,
)

PACKAGES = ("autogen-agentchat", "autogen-core", "autogen-ext", "openai")
STYLE = "GraphFlow team (DiGraphBuilder): parallel fan-out, join, conditional review loop"
MODEL = "bench-model"
MODEL_INFO = ModelInfo(
    vision=False,
    function_calling=False,
    json_output=False,
    family="unknown",
    structured_output=False,
)


class FinalAnswer(BaseChatAgent):
    """Leaf of the graph: answers with the writer's latest draft (no model call)."""

    def __init__(self) -> None:
        super().__init__("final", "Hands back the approved draft.")
        self._draft = ""

    @property
    def produced_message_types(self) -> Sequence[type[BaseChatMessage]]:
        return (TextMessage,)

    async def on_messages(
        self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken
    ) -> Response:
        for message in messages:
            if message.source == "writer":
                self._draft = message.to_model_text()
        return Response(chat_message=TextMessage(content=self._draft, source=self.name))

    async def on_reset(self, cancellation_token: CancellationToken) -> None:
        self._draft = ""


def build_team(client: OpenAIChatCompletionClient) -> GraphFlow:
    planner = AssistantAgent(
        "planner", model_client=client, system_message=f"{PLANNER} {PLANNER_FORMAT}"
    )
    researchers = [
        AssistantAgent(
            f"researcher_{i}",
            model_client=client,
            system_message=f"{RESEARCHER} {research_instruction(i)}",
        )
        for i in (1, 2)
    ]
    writer = AssistantAgent("writer", model_client=client, system_message=WRITER)
    critic = AssistantAgent(
        "critic", model_client=client, system_message=f"{CRITIC} {CRITIC_FORMAT}"
    )

    final = FinalAnswer()

    builder = DiGraphBuilder()
    for agent in (planner, *researchers, writer, critic, final):
        builder.add_node(agent)
    for researcher in researchers:
        builder.add_edge(planner, researcher)
        builder.add_edge(researcher, writer, activation_group="findings")
    builder.add_edge(writer, critic)
    builder.add_edge(
        critic,
        writer,
        condition=lambda msg: msg.to_model_text().strip().startswith(REVISE_MARK),
        activation_group="feedback",
        activation_condition="any",
    )
    builder.add_edge(
        critic,
        final,
        condition=lambda msg: not msg.to_model_text().strip().startswith(REVISE_MARK),
    )
    builder.set_entry_point(planner)
    return GraphFlow(
        participants=builder.get_participants(),
        graph=builder.build(),
        termination_condition=MaxMessageTermination(20),
    )


@asynccontextmanager
async def open_workflow(base_url: str, api_key: str) -> AsyncIterator[Ask]:
    client = OpenAIChatCompletionClient(
        model=MODEL, base_url=base_url, api_key=api_key, model_info=MODEL_INFO
    )
    team = build_team(client)

    async def ask(request: str) -> str:
        result: TaskResult = await team.run(task=request)
        return result.messages[-1].to_model_text()

    try:
        yield ask
    finally:
        await client.close()
