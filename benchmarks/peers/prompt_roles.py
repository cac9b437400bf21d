"""Prompt tokens per role for one task: Rede against the hand-written baseline.

Runs the workflow once through each against the loopback model server and sums the prompt
tokens the server counted by role (planner, researcher, writer, critic), so the difference in
``RESULTS.md``'s prompt tokens per task can be traced to where it is spent. Both halves run
in the project's environment: ``python benchmarks/peers/prompt_roles.py``.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import peer_baseline
import rede_runner
import workflow

from rede.testing.openai_server import FakeOpenAIServer, prompt_tokens


async def main() -> None:
    with FakeOpenAIServer(responder=workflow.respond) as server:
        for name, module in (("baseline", peer_baseline), ("rede", rede_runner)):
            async with module.open_workflow(server.base_url, name) as ask:
                await ask(workflow.REQUEST)
        by_client: dict[str, Counter[str]] = {}
        for received in server.requests:
            role, _ = workflow.classify(received.body)
            by_client.setdefault(received.api_key, Counter())[role] += prompt_tokens(received.body)
    roles = ("planner", "researcher", "writer", "critic")
    print("| framework | " + " | ".join(roles) + " | total |")
    print("|---|" + "---:|" * (len(roles) + 1))
    for name, counts in by_client.items():
        cells = " | ".join(str(counts[r]) for r in roles)
        print(f"| {name} | {cells} | {sum(counts.values())} |")


if __name__ == "__main__":
    asyncio.run(main())
