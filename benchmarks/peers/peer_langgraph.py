"""LangGraph: a ``StateGraph`` with the two researchers as parallel branches.

planner -> (researcher_1, researcher_2) -> writer -> critic -> writer (REVISE) | END (APPROVED).
Written as LangGraph's docs write a workflow: a typed state, one async node per agent, a
reducer for the parallel branches' findings, a conditional edge for the review loop, and
``ChatOpenAI`` from ``langchain-openai`` pointed at the local server.
"""

from __future__ import annotations

import operator
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, TypedDict

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph
from workflow import (
    CRITIC,
    CRITIC_FORMAT,
    PLANNER,
    PLANNER_FORMAT,
    RESEARCHER,
    REVISE_MARK,
    WRITER,
    Ask,
    parse_sub_questions,
    research_instruction,
)

PACKAGES = ("langgraph", "langchain-core", "langchain-openai", "openai")
STYLE = "StateGraph, researchers as parallel branches, conditional edge for the review loop"
MODEL = "bench-model"


class State(TypedDict, total=False):
    request: str
    sub_questions: list[str]
    findings: Annotated[list[str], operator.add]
    draft: str
    critique: str


def build_graph(llm: ChatOpenAI) -> Any:
    async def chat(system: str, user: str) -> str:
        reply = await llm.ainvoke([SystemMessage(system), HumanMessage(user)])
        return str(reply.content)

    async def planner(state: State) -> State:
        plan = await chat(f"{PLANNER} {PLANNER_FORMAT}", state["request"])
        return {"sub_questions": parse_sub_questions(plan)}

    def researcher(index: int) -> Any:
        async def research(state: State) -> State:
            question = state["sub_questions"][index - 1]
            user = f"Request: {state['request']}\n\n{research_instruction(index, question)}"
            return {"findings": [await chat(RESEARCHER, user)]}

        return research

    async def writer(state: State) -> State:
        user = f"Request: {state['request']}\n\nFindings:\n" + "\n\n".join(state["findings"])
        if state.get("critique"):
            user += f"\n\nYour draft:\n{state['draft']}\n\nCritic: {state['critique']}"
        return {"draft": await chat(WRITER, user)}

    async def critic(state: State) -> State:
        user = f"Request: {state['request']}\n\nDraft:\n{state['draft']}"
        return {"critique": await chat(f"{CRITIC} {CRITIC_FORMAT}", user)}

    def review(state: State) -> Literal["writer", "__end__"]:
        return "writer" if state["critique"].strip().startswith(REVISE_MARK) else END

    graph = StateGraph(State)
    graph.add_node("planner", planner)
    graph.add_node("researcher_1", researcher(1))
    graph.add_node("researcher_2", researcher(2))
    graph.add_node("writer", writer)
    graph.add_node("critic", critic)
    graph.add_edge(START, "planner")
    graph.add_edge("planner", "researcher_1")
    graph.add_edge("planner", "researcher_2")
    graph.add_edge(["researcher_1", "researcher_2"], "writer")
    graph.add_edge("writer", "critic")
    graph.add_conditional_edges("critic", review)
    return graph.compile()


@asynccontextmanager
async def open_workflow(base_url: str, api_key: str) -> AsyncIterator[Ask]:
    llm = ChatOpenAI(model=MODEL, base_url=base_url, api_key=api_key)
    app = build_graph(llm)

    async def ask(request: str) -> str:
        state = await app.ainvoke({"request": request})
        return str(state["draft"])

    yield ask
