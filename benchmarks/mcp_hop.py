"""What a step that calls an MCP tool costs through Rede, against calling the tool directly.

One stdio server written with the SDK (``tests/mcp_server.py``), its ``add`` tool called
``--calls`` times one after another: directly with the SDK's ``Client``, and as a one-step
plan through a network (in-process bus, router, agent runner, ledger in memory) whose agent
is that server. Also the time to start the server and list its tools. Medians in ms.

    python benchmarks/mcp_hop.py              # 200 calls each
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

from mcp import Client, StdioServerParameters

from rede import Network
from rede.orchestration.plan import Plan, Step

SERVER = Path(__file__).resolve().parents[1] / "tests" / "mcp_server.py"
ARGS = {"a": 2, "b": 3}


async def direct(calls: int) -> list[float]:
    params = StdioServerParameters(command=sys.executable, args=[str(SERVER)])
    out = []
    async with Client(params, read_timeout_seconds=10) as client:
        for _ in range(calls):
            start = time.perf_counter()
            await client.call_tool("add", ARGS)
            out.append(time.perf_counter() - start)
    return out


async def through_rede(calls: int) -> tuple[float, list[float]]:
    net = Network.from_dict(
        {"agents": [{"name": "calc", "mcp": {"command": sys.executable, "args": [str(SERVER)]}}]}
    )
    start = time.perf_counter()
    await net.start()
    started = time.perf_counter() - start
    plan = Plan(steps=[Step(id="s1", capability="add", instruction='{"a": 2, "b": 3}')])
    out = []
    try:
        for _ in range(calls):
            start = time.perf_counter()
            await net.ask("add", plan=plan)
            out.append(time.perf_counter() - start)
    finally:
        await net.stop()
    return started, out


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.2f} ms"


async def main(calls: int) -> None:
    sdk = await direct(calls)
    started, rede = await through_rede(calls)
    print(f"start the server and list its tools (network start): {started * 1000:.0f} ms")
    print(f"SDK call_tool, median of {calls}: {ms(sdk)}")
    print(f"Rede one-step plan on that tool, median of {calls}: {ms(rede)}")
    extra = statistics.median(rede) - statistics.median(sdk)
    print(f"Rede's share: {extra * 1000:.2f} ms a step")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    asyncio.run(main(parser.parse_args().calls))
