"""CrewAI: a crew of five agents and six tasks, run by the sequential process.

plan -> (research SQ1, research SQ2: ``async_execution=True``, so they run at once) ->
write (context: both findings) -> critique (context: the draft) -> revise (context: the
findings, the draft and the critique). Written as CrewAI's docs write a crew: ``Agent``
(role, goal, backstory), ``Task`` (description, expected output, context), ``Crew`` with
``Process.sequential``, and ``LLM("openai/...", base_url=...)`` for the local server.

A crew's task list is fixed before it runs: it cannot loop back to the writer until the
critic approves (that needs a Flow with a router, not a crew), so the review is unrolled to
one critique and one revision, and the critic does not see the revision.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from crewai import LLM, Agent, Crew, Process, Task
from workflow import CRITIC, CRITIC_FORMAT, PLANNER, PLANNER_FORMAT, RESEARCHER, WRITER, Ask

PACKAGES = ("crewai", "openai", "pydantic")
STYLE = (
    "sequential crew, the two research tasks async_execution=True; review unrolled to one "
    "critique + one revision (a crew cannot loop)"
)
MODEL = "openai/bench-model"


def build_crew(llm: LLM) -> Crew:
    def agent(role: str, goal: str, backstory: str) -> Agent:
        return Agent(role=role, goal=goal, backstory=backstory, llm=llm, verbose=False)

    planner = agent("the planner", "Split the request into two research sub-questions", PLANNER)
    researchers = [
        agent(f"researcher {i}", f"Answer research sub-question SQ{i}", RESEARCHER) for i in (1, 2)
    ]
    writer = agent("the writer", "Write the answer to the user's request", WRITER)
    critic = agent("the critic", "Review the writer's draft", CRITIC)

    plan = Task(
        description=f"User request: {{request}}\n\n{PLANNER_FORMAT}",
        expected_output="Two lines: SQ1: <question> and SQ2: <question>.",
        agent=planner,
    )
    research = [
        Task(
            description=f"User request: {{request}}\n\nResearch sub-question SQ{i} of the plan.",
            expected_output=f"Findings for SQ{i}, a few sentences.",
            agent=researcher,
            context=[plan],
            async_execution=True,
        )
        for i, researcher in enumerate(researchers, 1)
    ]
    write = Task(
        description="User request: {request}\n\nWrite the answer from the findings.",
        expected_output="The answer to the user's request.",
        agent=writer,
        context=research,
    )
    critique = Task(
        description=f"User request: {{request}}\n\nReview the draft. {CRITIC_FORMAT}",
        expected_output="REVISE: <what to change>, or APPROVED.",
        agent=critic,
        context=[write],
    )
    revise = Task(
        description="User request: {request}\n\nRevise your draft as the critic asks.",
        expected_output="The revised answer to the user's request.",
        agent=writer,
        context=[*research, write, critique],
    )
    return Crew(
        agents=[planner, *researchers, writer, critic],
        tasks=[plan, *research, write, critique, revise],
        process=Process.sequential,
        verbose=False,
    )


@asynccontextmanager
async def open_workflow(base_url: str, api_key: str) -> AsyncIterator[Ask]:
    crew = build_crew(LLM(model=MODEL, base_url=base_url, api_key=api_key))

    async def ask(request: str) -> str:
        output = await crew.akickoff(inputs={"request": request})
        return str(output.raw)

    yield ask
