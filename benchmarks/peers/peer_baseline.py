"""Baseline without a framework: the workflow hand-written with the ``openai`` SDK and asyncio.

Not a peer: the floor that shows what one HTTP call to the local server costs from Python.
Each agent gets only what it needs (its role, its instruction, the work it builds on).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from openai import AsyncOpenAI
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

PACKAGES = ("openai",)
STYLE = "hand-written asyncio, openai SDK (no framework)"
MODEL = "bench-model"


@asynccontextmanager
async def open_workflow(base_url: str, api_key: str) -> AsyncIterator[Ask]:
    client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)

    async def call(system: str, user: str) -> str:
        reply = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
        )
        return reply.choices[0].message.content or ""

    async def ask(request: str) -> str:
        plan = await call(f"{PLANNER} {PLANNER_FORMAT}", request)
        questions = parse_sub_questions(plan)
        findings = await asyncio.gather(
            *(
                call(RESEARCHER, f"Request: {request}\n\n{research_instruction(i, q)}")
                for i, q in enumerate(questions, 1)
            )
        )
        material = "\n\n".join(findings)
        draft = await call(WRITER, f"Request: {request}\n\nFindings:\n{material}")
        while True:
            verdict = await call(
                f"{CRITIC} {CRITIC_FORMAT}", f"Request: {request}\n\nDraft:\n{draft}"
            )
            if not verdict.strip().startswith(REVISE_MARK):
                return draft
            draft = await call(
                WRITER,
                f"Request: {request}\n\nFindings:\n{material}\n\nYour draft:\n{draft}\n\n"
                f"Critic: {verdict}",
            )

    try:
        yield ask
    finally:
        await client.close()
