"""AutoGen (autogen-agentchat), second style: a ``SelectorGroupChat``.

The AgentChat docs' team for a planner that hands work to specialists ("Selector Group
Chat"): before every turn the model reads the whole conversation and names the next speaker.
It runs one agent at a time, so the two researchers answer one after the other, and every
turn costs one more model call (counted as ``other``, not a hop). The conversation ends when
the critic says APPROVED; the last draft is the answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import TaskResult
from autogen_agentchat.conditions import MaxMessageTermination, TextMentionTermination
from autogen_agentchat.messages import TextMessage
from autogen_agentchat.teams import SelectorGroupChat
from autogen_ext.models.openai import OpenAIChatCompletionClient
from peer_autogen import MODEL, MODEL_INFO
from workflow import (
    APPROVED,
    CRITIC,
    CRITIC_FORMAT,
    PLANNER,
    PLANNER_FORMAT,
    RESEARCHER,
    WRITER,
    Ask,
    research_instruction,
)

PACKAGES = ("autogen-agentchat", "autogen-core", "autogen-ext", "openai")
STYLE = "SelectorGroupChat: the model picks each next speaker from the whole conversation"


def build_team(client: OpenAIChatCompletionClient) -> SelectorGroupChat:
    def agent(name: str, description: str, system_message: str) -> AssistantAgent:
        return AssistantAgent(
            name, model_client=client, description=description, system_message=system_message
        )

    participants = [
        agent(
            "planner",
            "Splits the request into two research sub-questions; speaks first.",
            f"{PLANNER} {PLANNER_FORMAT}",
        ),
        *(
            agent(
                f"researcher_{i}",
                f"Answers research sub-question SQ{i} of the plan.",
                f"{RESEARCHER} {research_instruction(i)}",
            )
            for i in (1, 2)
        ),
        agent("writer", "Writes and revises the answer from the findings.", WRITER),
        agent("critic", "Reviews the writer's drafts.", f"{CRITIC} {CRITIC_FORMAT}"),
    ]
    return SelectorGroupChat(
        participants,
        model_client=client,
        termination_condition=TextMentionTermination(APPROVED, sources=["critic"])
        | MaxMessageTermination(20),
    )


@asynccontextmanager
async def open_workflow(base_url: str, api_key: str) -> AsyncIterator[Ask]:
    client = OpenAIChatCompletionClient(
        model=MODEL, base_url=base_url, api_key=api_key, model_info=MODEL_INFO
    )
    team = build_team(client)

    async def ask(request: str) -> str:
        result: TaskResult = await team.run(task=request)
        drafts = [
            m.content
            for m in result.messages
            if isinstance(m, TextMessage) and m.source == "writer"
        ]
        return drafts[-1]

    try:
        yield ask
    finally:
        await client.close()
