"""MCP servers as agents: each tool of a server is a capability (``mcp:`` of an agent).

An :class:`McpServer` starts a server's command over stdio, or connects to a streamable HTTP
``url``, with the official ``mcp`` SDK (the ``mcp`` extra). One owner task holds the session
open; a server that dies (its process exits, its connection drops, or a call outlasts
``call_timeout_s``) is started again, up to ``restarts`` times, and stopping the network
stops it (the SDK closes stdin, then terminates the process tree).

How a step becomes a tool's arguments (:func:`tool_arguments`):

- the first JSON object in the instruction that is valid against the tool's input schema;
- else, for a tool that takes one string argument, the instruction itself as that argument;
- else, for a tool without arguments, ``{}``;
- else the step fails with an error naming the tool's arguments and what did not validate.

A result the server marks as an error, or one whose structured content does not match the
tool's output schema (the SDK checks it), fails the step; the step-failure policy of the
orchestrator (retries, other agents) takes it from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rede.agents.remote import adopt_capabilities, remote_spec
from rede.agents.specialists import Specialist, SpecialistSpec, TaskContext
from rede.agents.tools import _first_object
from rede.backoff import doubling
from rede.config import NAME, AgentConfig, McpConfig
from rede.errors import RemoteAgentError, one_line
from rede.extras import require
from rede.protocol.messages import Result, Task, Usage

CONNECTION_CLOSED = -32000
"""The JSON-RPC code the SDK gives a request whose connection closed under it."""


@dataclass
class McpTool:
    """One tool of a server, as the network sees it."""

    name: str
    capability: str
    description: str = ""
    input_schema: dict[str, Any] = field(default_factory=dict)
    output_schema: dict[str, Any] | None = None

    @property
    def argument_names(self) -> list[str]:
        return list(self.input_schema.get("properties") or {})

    @property
    def text_argument(self) -> str | None:
        """The one string argument a plain instruction fills, if the tool takes only that."""
        props = self.input_schema.get("properties") or {}
        if len(props) == 1:
            ((name, prop),) = props.items()
            if isinstance(prop, dict) and prop.get("type") == "string":
                return name
        return None


def tool_arguments(tool: McpTool, instruction: str) -> dict[str, Any]:
    """A step's instruction as the tool's arguments (see the module docstring)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    validator = Draft202012Validator(tool.input_schema or {"type": "object"})
    found = _first_object(instruction)
    if found is not None and validator.is_valid(found):
        return found
    text = tool.text_argument
    if text is not None and found is None:
        return {text: instruction}
    if not tool.argument_names and found is None:
        return {}
    names = ", ".join(tool.argument_names) or "none"
    if found is None:
        raise ValueError(
            f"MCP tool {tool.name!r} takes arguments ({names}) as a JSON object in the "
            f"instruction; found none in {one_line(instruction[:80])!r}"
        )
    error = best_match(validator.iter_errors(found))
    where = "/".join(str(p) for p in error.path) if error is not None else ""
    what = error.message if error is not None else "invalid"
    raise ValueError(
        f"MCP tool {tool.name!r} arguments ({names}): {one_line(what)[:200]}"
        + (f" at {where!r}" if where else "")
    )


def capability_name(tool: str) -> str:
    """A tool's name as a capability: characters a capability may not have become ``_``."""
    name = re.sub(r"[^A-Za-z0-9_\-]", "_", tool)
    assert re.match(NAME, name)
    return name


class McpServer:
    """One MCP server, supervised: started, restarted when it dies, stopped with the network."""

    def __init__(self, agent: str, conf: McpConfig, base_dir: Path | None = None) -> None:
        self.agent = agent
        self.conf = conf
        self.base_dir = base_dir
        self.tools: dict[str, McpTool] = {}
        """By capability."""
        self.restarts = 0
        self._client: Any = None
        self._up = asyncio.Event()
        self._lost = asyncio.Event()
        self._closing = False
        self._stop = asyncio.Event()
        self._owner: asyncio.Task[None] | None = None
        self.last_error = ""

    @property
    def where(self) -> str:
        c = self.conf
        return c.url if c.url is not None else " ".join([c.command or "", *c.args])

    def _make_client(self) -> Any:
        (mcp,) = require("an 'mcp:' agent", "mcp", "mcp")
        c = self.conf
        timeout = c.call_timeout_s
        if c.url is not None:
            return mcp.Client(c.url, read_timeout_seconds=timeout)
        params = mcp.StdioServerParameters(
            command=c.command or "", args=c.args, env=c.env or None, cwd=self.base_dir
        )
        return mcp.Client(params, read_timeout_seconds=timeout)

    async def start(self) -> dict[str, McpTool]:
        """Start (or connect to) the server and list its tools, within ``start_timeout_s``."""
        client = self._make_client()  # a missing extra fails here, before any task
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._owner = asyncio.create_task(self._own(client, ready))
        try:
            async with asyncio.timeout(self.conf.start_timeout_s):
                await ready
        except TimeoutError:
            await self.aclose()
            raise RemoteAgentError(
                f"MCP server of agent {self.agent!r} ({self.where}) did not start within "
                f"{self.conf.start_timeout_s:g}s (mcp.start_timeout_s)"
            ) from None
        except BaseException:
            await self.aclose()
            raise
        return self.tools

    async def _own(self, client: Any, ready: asyncio.Future[None]) -> None:
        """The owner task: hold a session open until it is lost; start again when it is."""
        while True:
            self._lost.clear()
            try:
                async with asyncio.timeout(self.conf.start_timeout_s) as starting, client:
                    await self._list_tools(client)
                    starting.reschedule(None)  # started: the session lives until it is lost
                    self._client = client
                    if not ready.done():
                        ready.set_result(None)
                    self._up.set()
                    await self._lost.wait()
            except Exception as exc:
                self.last_error = (
                    "no answer within mcp.start_timeout_s"
                    if isinstance(exc, TimeoutError)
                    else _why(exc)
                )
                if not ready.done():
                    ready.set_exception(
                        RemoteAgentError(
                            f"MCP server of agent {self.agent!r} ({self.where}) failed to "
                            f"start: {self.last_error}"
                        )
                    )
                    return
            finally:
                self._up.clear()
                self._client = None
            if self._closing or self.restarts >= self.conf.restarts:
                return
            with contextlib.suppress(TimeoutError):  # a pause before starting it again
                await asyncio.wait_for(self._stop.wait(), doubling(0.1, self.restarts, 5.0))
            if self._closing:
                return
            self.restarts += 1
            client = self._make_client()

    async def _list_tools(self, client: Any) -> None:
        listed: list[Any] = []
        cursor = None
        for _ in range(100):  # a server whose pages never end cannot hang the start
            page = await client.list_tools(cursor=cursor)
            listed.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        by_name = {t.name: t for t in listed}
        wanted = self.conf.tools or {name: capability_name(name) for name in by_name}
        missing = sorted(set(wanted) - set(by_name))
        if missing:
            raise RemoteAgentError(
                f"mcp.tools names {', '.join(missing)}, which the server does not have "
                f"(it has {', '.join(sorted(by_name)) or 'no tools'})"
            )
        self.tools = {
            cap: McpTool(
                name=name,
                capability=cap,
                description=by_name[name].description or "",
                input_schema=dict(by_name[name].input_schema or {}),
                output_schema=by_name[name].output_schema,
            )
            for name, cap in wanted.items()
        }

    async def call(self, tool: str, arguments: dict[str, Any]) -> Any:
        """Call one tool, bounded by ``call_timeout_s`` (and a restart in progress by
        ``start_timeout_s``)."""
        timeout = self.conf.call_timeout_s
        try:
            async with asyncio.timeout(self.conf.start_timeout_s):
                client = await self._ready()
        except TimeoutError:
            raise RemoteAgentError(
                f"MCP server of agent {self.agent!r} is starting again and did not come up "
                f"within {self.conf.start_timeout_s:g}s (mcp.start_timeout_s)"
            ) from None
        try:
            async with asyncio.timeout(timeout):
                result = await client.call_tool(tool, arguments)
        except TimeoutError:
            self._mark_lost(client)  # its state is unknown: start it again for the next call
            raise RemoteAgentError(
                f"MCP tool {tool!r} of agent {self.agent!r} did not answer within {timeout:g}s "
                f"(mcp.call_timeout_s); {self._next_life()}"
            ) from None
        except RemoteAgentError:
            raise
        except Exception as exc:
            if getattr(exc, "code", None) == CONNECTION_CLOSED or isinstance(exc, OSError):
                self._mark_lost(client)
                raise RemoteAgentError(
                    f"MCP server of agent {self.agent!r} died during a call of {tool!r}; "
                    f"{self._next_life()}"
                ) from None
            raise RemoteAgentError(f"MCP tool {tool!r}: {_why(exc)}") from None
        return result

    def _next_life(self) -> str:
        if self.restarts >= self.conf.restarts:
            return f"it is not started again (mcp.restarts {self.conf.restarts} used)"
        return f"it is started again (restart {self.restarts + 1} of {self.conf.restarts})"

    def _mark_lost(self, client: Any) -> None:
        """The session ``client`` is dead: no call gets it again; the owner starts another."""
        if client is not None and client is self._client:
            self._up.clear()
            self._client = None
            self._lost.set()

    async def _ready(self) -> Any:
        """The live client, waiting for a restart in progress; an error once it gave up."""
        owner = self._owner
        while self._client is None or not self._up.is_set():
            if owner is None or owner.done():
                raise RemoteAgentError(
                    f"MCP server of agent {self.agent!r} ({self.where}) is not running "
                    f"(restarted {self.restarts} times; last error: {self.last_error or 'none'})"
                )
            up = asyncio.ensure_future(self._up.wait())
            try:
                await asyncio.wait({up, owner}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                up.cancel()
        return self._client

    async def aclose(self) -> None:
        """Stop the server (or close the connection); nothing is left running."""
        self._closing = True
        self._stop.set()
        self._lost.set()
        if self._owner is not None:
            owner, self._owner = self._owner, None
            try:
                async with asyncio.timeout(10):
                    await asyncio.shield(owner)
            except (TimeoutError, Exception):
                owner.cancel()
                with contextlib.suppress(BaseException):
                    await owner


def _why(exc: BaseException) -> str:
    """One line for an error, the first leaf of an exception group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    lines = str(exc).strip().splitlines()
    return one_line(lines[0])[:300] if lines else type(exc).__name__


class McpSpecialist(Specialist):
    """The tools of one MCP server as a specialist: free, confidence 1 on success."""

    kind = "tool"

    def __init__(self, server: McpServer) -> None:
        self.server = server
        self.model_name = f"mcp:{server.agent}"

    async def handle(self, task: Task, ctx: TaskContext) -> Result:
        tool = self.server.tools.get(task.capability)
        if tool is None:
            raise ValueError(f"agent {self.server.agent!r} has no MCP tool for {task.capability!r}")
        arguments = tool_arguments(tool, task.instruction)
        start = time.perf_counter()
        result = await self.server.call(tool.name, arguments)
        text = result_text(result)
        if result.is_error:
            raise RemoteAgentError(f"MCP tool {tool.name!r} failed: {text[:300]}")
        usage = Usage(
            model=self.model_name, latency_s=time.perf_counter() - start, calls=1, source="tool"
        )
        data: dict[str, Any] = {"confidence_method": "tool", "tool": tool.name}
        data["arguments"] = arguments
        if result.structured_content is not None:
            data["structured"] = result.structured_content
        return Result(output=text, confidence=1.0, usage=usage, data=data)


def result_text(result: Any) -> str:
    """A tool result's text: its text blocks, else its structured content as JSON."""
    parts = []
    for block in result.content or []:
        text = getattr(block, "text", None)
        parts.append(text if isinstance(text, str) else f"[{getattr(block, 'type', 'content')}]")
    if parts:
        return "\n".join(parts)
    if result.structured_content is not None:
        return json.dumps(result.structured_content)
    return ""


async def open_mcp(agent: AgentConfig, base_dir: Path | None) -> McpServer:
    """Start an ``mcp:`` agent's server and give the agent its tools as capabilities."""
    assert agent.mcp is not None
    server = McpServer(agent.name, agent.mcp, base_dir)
    await server.start()
    await adopt_capabilities(agent, set(server.tools), "its MCP server has no tool", server.aclose)
    return server


def mcp_spec(agent: AgentConfig, server: McpServer) -> SpecialistSpec:
    return remote_spec(agent, McpSpecialist(server), quality=0.99)


__all__ = [
    "McpServer",
    "McpSpecialist",
    "McpTool",
    "capability_name",
    "mcp_spec",
    "open_mcp",
    "result_text",
    "tool_arguments",
]
