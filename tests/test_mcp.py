"""MCP servers as agents, against real servers: one written with the SDK here
(tests/mcp_server.py) over stdio and streamable HTTP, and mcp-server-time from PyPI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

from rede import Network
from rede.agents.mcp import McpTool, tool_arguments
from rede.errors import ConfigError, MissingExtra, RedeError, RemoteAgentError
from rede.orchestration.plan import Plan, Step

SERVER = Path(__file__).with_name("mcp_server.py")


def running(token: str) -> list[int]:
    """Live (not zombie) processes whose command line or environment carries ``token``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if token.encode() in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


@pytest.fixture
def token() -> str:
    return f"rede-test-{uuid.uuid4().hex[:8]}"


def network(mcp: dict[str, Any], **agent: Any) -> Network:
    return Network.from_dict(
        {
            "name": "mcp-tests",
            "limits": {"step_retries": 0, "step_timeout_s": 20},
            "agents": [{"name": "calc", "mcp": mcp, **agent}],
        }
    )


def stdio(token: str, mode: str = "stdio", **options: Any) -> dict[str, Any]:
    return {"command": sys.executable, "args": [str(SERVER), mode, token], **options}


def one_step(capability: str, instruction: str) -> Plan:
    return Plan(steps=[Step(id="s1", capability=capability, instruction=instruction)])


async def test_tools_become_capabilities_that_steps_call_over_stdio(token: str) -> None:
    net = network(stdio(token))
    async with net:
        assert net.config.agents[0].capabilities == [
            "add",
            "die",
            "hang",
            "off_schema",
            "pid",
            "shout",
        ]
        plan = Plan(
            steps=[
                Step(id="sum", capability="add", instruction='Add {"a": 2, "b": 3.5}'),
                Step(id="loud", capability="shout", instruction="hello there"),
            ]
        )
        run = await net.ask("add and shout", plan=plan)
        assert run.status == "ok"
        assert run.step("sum").output == "5.5"
        assert run.step("loud").output == "HELLO THERE"  # one string argument: the text
        routes = [d for d in run.decisions if d["name"] == "route"]
        assert {d.get("agent") for d in routes} == {"calc"}
        assert running(token)
    assert running(token) == []  # stopped with the network


def test_instruction_becomes_arguments_by_the_schema() -> None:
    add = McpTool(
        "add",
        "add",
        input_schema={
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"],
        },
    )
    echo = McpTool(
        "echo", "echo", input_schema={"type": "object", "properties": {"text": {"type": "string"}}}
    )
    assert tool_arguments(add, 'please {"a": 1, "b": 2} thanks') == {"a": 1, "b": 2}
    assert tool_arguments(echo, "plain words") == {"text": "plain words"}
    assert tool_arguments(echo, '{"text": "from json"}') == {"text": "from json"}
    with pytest.raises(ValueError, match=r"'add' arguments \(a, b\): 'x' is not of type"):
        tool_arguments(add, '{"a": "x", "b": 2}')
    with pytest.raises(ValueError, match=r"takes arguments \(a, b\) as a JSON object"):
        tool_arguments(add, "two and three")
    assert tool_arguments(McpTool("pid", "pid", input_schema={"type": "object"}), "now") == {}


@pytest.fixture
def http_server(token: str) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "http", token], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_streamable_http_server(http_server: str) -> None:
    async with network({"url": http_server, "tools": {"add": "sum", "pid": "pid"}}) as net:
        assert net.config.agents[0].capabilities == ["pid", "sum"]
        run = await net.ask("sum", plan=one_step("sum", '{"a": 40, "b": 2}'))
        assert run.answer == "42.0"


async def test_third_party_server_from_pypi(token: str) -> None:
    pytest.importorskip("mcp_server_time")
    conf = {
        "command": sys.executable,
        "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"],
        "env": {"REDE_TEST_TOKEN": token},
        "tools": {"get_current_time": "clock"},
    }
    async with network(conf) as net:
        assert net.config.agents[0].capabilities == ["clock"]
        run = await net.ask("Asia/Tokyo")  # one step, routed to the only capability
        assert json.loads(run.answer)["timezone"] == "Asia/Tokyo"
        assert run.steps[0].usage.source == "tool"
    assert running(token) == []


async def test_server_that_fails_to_start_is_one_line_and_leaves_nothing(token: str) -> None:
    with pytest.raises(RemoteAgentError, match="failed to start") as caught:
        async with network(stdio(token, "fail")):
            pass
    assert "\n" not in str(caught.value)
    assert running(token) == []


async def test_server_that_hangs_on_start_is_bounded(token: str) -> None:
    with pytest.raises(RemoteAgentError, match=r"did not start within 1.5s"):
        async with network(stdio(token, "hang", start_timeout_s=1.5)):
            pass
    assert running(token) == []


async def test_crash_mid_call_fails_the_step_and_the_server_is_restarted(token: str) -> None:
    async with network(stdio(token)) as net:
        first = int((await net.ask("pid", plan=one_step("pid", "now"))).answer)
        with pytest.raises(RedeError, match=r"died during a call of 'die'.*restart 1 of 3"):
            await net.ask("die", plan=one_step("die", "now"))
        second = int((await net.ask("pid", plan=one_step("pid", "now"))).answer)
        assert second != first
        assert running(token) == [second]
    assert running(token) == []


async def test_a_server_out_of_restarts_fails_steps_saying_so(token: str) -> None:
    async with network(stdio(token, restarts=0)) as net:
        with pytest.raises(RedeError, match=r"it is not started again \(mcp.restarts 0 used\)"):
            await net.ask("die", plan=one_step("die", "now"))
        with pytest.raises(RedeError, match=r"'calc' .* is not running \(restarted 0 times"):
            await net.ask("pid", plan=one_step("pid", "now"))
        assert running(token) == []


async def test_hang_mid_call_fails_the_step_in_bounded_time(token: str) -> None:
    async with network(stdio(token, call_timeout_s=1)) as net:
        with pytest.raises(RedeError, match=r"'hang' of agent 'calc' did not answer within 1s"):
            await net.ask("hang", plan=one_step("hang", "now"))
        run = await net.ask("add", plan=one_step("add", '{"a": 1, "b": 1}'))
        assert run.answer == "2.0"  # a fresh server took over
    assert running(token) == []


async def test_result_off_its_schema_and_bad_arguments_fail_the_step(token: str) -> None:
    async with network(stdio(token)) as net:
        with pytest.raises(RedeError, match="Invalid structured content returned by tool"):
            await net.ask("x", plan=one_step("off_schema", "now"))
        with pytest.raises(RedeError, match=r"'add' arguments \(a, b\): 'b' is a required"):
            await net.ask("x", plan=one_step("add", '{"a": 1}'))


async def test_tools_that_the_server_lacks(token: str) -> None:
    with pytest.raises(RemoteAgentError, match=r"mcp.tools names nope, which the server"):
        async with network(stdio(token, tools={"nope": "nope"})):
            pass
    assert running(token) == []


def test_config_needs_one_transport() -> None:
    with pytest.raises(ConfigError, match="exactly one of 'command'"):
        network({"command": "x", "url": "http://127.0.0.1:1/mcp"})
    with pytest.raises(ConfigError, match="exactly one of 'model', 'tool', 'mcp' or 'a2a'"):
        Network.from_dict({"agents": [{"name": "a", "tool": "echo", "mcp": {"command": "x"}}]})


async def test_without_the_sdk_the_error_names_the_extra(
    token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)
    with pytest.raises(MissingExtra, match=r'pip install "rede\[mcp\]"'):
        async with network(stdio(token)):
            pass
    assert running(token) == []


def test_rede_validate_lists_the_tools_found(token: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rede.cli.app import app

    spec = {
        "name": "tooled",
        "agents": [{"name": "calc", "mcp": stdio(token, tools={"add": "sum", "shout": "shout"})}],
    }
    path = tmp_path / "net.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "calc serves 2 tool(s): add as sum, shout" in result.output
    result = CliRunner().invoke(app, ["validate", str(path), "--json"])
    assert json.loads(result.output)["tools"] == {"calc": {"add": "sum", "shout": "shout"}}
    assert running(token) == []


# ---------------------------------------------------------------- a network as an MCP server


def rede_mcp(network: Path | str, ledger: Path) -> Any:
    from mcp import StdioServerParameters

    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "rede", "mcp", str(network), "--fast", "--ledger", str(ledger)],
        env={"PYTHONPATH": os.environ.get("PYTHONPATH", "")},
    )


async def test_rede_mcp_serves_a_network_as_the_tool_ask(tmp_path: Path) -> None:
    from mcp import Client

    from rede.cli.app import demo_network_path
    from rede.orchestration.ledger import SQLiteLedger

    ledger = tmp_path / "ledger.db"
    async with Client(rede_mcp(demo_network_path(), ledger), read_timeout_seconds=60) as client:
        tools = (await client.list_tools()).tools
        assert [t.name for t in tools] == ["ask"]
        result = await client.call_tool("ask", {"request": "Compare SQLite and Postgres"})
    assert not result.is_error
    out = result.structured_content
    assert out["simulated"] is True and out["answer"].startswith("[simulated] ")
    assert out["status"] == "ok" and out["cost_usd"] > 0 and out["tokens"] > 0
    assert SQLiteLedger(ledger).decisions(out["run_id"])  # the run is in the ledger


async def test_rede_mcp_real_answers_unmarked_and_failures_as_tool_errors(
    tmp_path: Path,
) -> None:
    from mcp import Client

    path = tmp_path / "calc.yaml"
    path.write_text(
        json.dumps(
            {
                "name": "calc",
                "agents": [{"name": "calc", "tool": "arithmetic", "capabilities": ["arithmetic"]}],
            }
        )
    )
    async with Client(rede_mcp(path, tmp_path / "l.db"), read_timeout_seconds=60) as client:
        ok = await client.call_tool("ask", {"request": "What is 6 * 7?"})
        failed = await client.call_tool("ask", {"request": "no numbers here"})
    assert ok.structured_content["answer"] == "6 * 7 = 42"
    assert ok.structured_content["simulated"] is False
    assert failed.is_error
    assert "no arithmetic expression" in failed.content[0].text
    assert "(run run-" in failed.content[0].text


@pytest.fixture
def rede_mcp_http() -> Iterator[str]:
    from rede.cli.app import demo_network_path

    args = ["-m", "rede", "mcp", str(demo_network_path()), "--fast", "--ledger", ""]
    proc = subprocess.Popen(
        [sys.executable, *args, "--port", "0"], stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # said once it accepts connections
        url = line.rsplit(" ", 1)[-1].strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/mcp"), line
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


async def test_rede_mcp_over_streamable_http(rede_mcp_http: str) -> None:
    from mcp import Client

    async with Client(rede_mcp_http, read_timeout_seconds=60) as client:
        result = await client.call_tool("ask", {"request": "What is 6*7?"})
    assert result.structured_content["answer"] == "6*7 = 42"
    assert result.structured_content["simulated"] is False  # the arithmetic tool answered
