"""Tools: plain Python functions as agents.

A tool is a function; ``@tool`` (or passing the function to ``Network(..., tools=[fn])``)
makes it an agent serving one capability (the function's name unless given). How a task
reaches the function follows its signature:

- one ``str`` (or unannotated) parameter: the step's instruction text;
- typed parameters (``def add(a: float, b: float) -> float``): the first JSON object in the
  instruction, validated against them (pydantic), so ``{"a": 2, "b": 3}`` calls ``add(2, 3)``;
  a missing or ill-typed argument fails the task with an error naming the parameters;
- a parameter named ``task`` (a :class:`~rede.protocol.messages.Task`): the whole task, as
  the built-in tools take it;
- a parameter named ``ctx`` besides: the task context (``await ctx.ask(capability, question)``
  asks another agent).

The function may be ``async``. What it returns becomes the result's output: text as it is,
anything else as JSON (a pydantic model through ``model_dump_json``).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import operator
import re
import time
import typing
from collections.abc import Callable, Mapping
from typing import Any, overload

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from rede.agents.specialists import Specialist, TaskContext
from rede.errors import ConfigError
from rede.protocol.codec import describe_validation_error
from rede.protocol.messages import Result, Task, Usage

ToolFn = Callable[..., Any]
"""A function a tool wraps (see the module docstring for how it is called)."""


class Tool:
    """A Python function as an agent's logic; calling the tool calls the function."""

    def __init__(
        self,
        fn: ToolFn,
        *,
        name: str | None = None,
        capability: str | None = None,
        description: str | None = None,
    ) -> None:
        if not callable(fn):
            raise ConfigError(f"a tool must be callable, got {fn!r}")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "tool")
        self.capability = capability or self.name
        self.description = description or inspect.getdoc(fn) or ""
        signature = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(fn)
        except (NameError, TypeError):
            hints = {}
        params = [p for p in signature.parameters.values() if p.name != "ctx"]
        self._wants_ctx = "ctx" in signature.parameters
        self._mode = "args"
        self.arguments: type[BaseModel] | None = None
        if any(p.name == "task" for p in params):
            self._mode = "task"
        elif len(params) == 1 and hints.get(params[0].name, str) is str:
            self._mode = "text"
        else:
            fields: dict[str, Any] = {
                p.name: (
                    hints.get(p.name, Any),
                    ... if p.default is inspect.Parameter.empty else p.default,
                )
                for p in params
            }
            self.arguments = create_model(  # type: ignore[call-overload]
                f"{self.name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
            )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool({self.name!r}, capability={self.capability!r})"

    @property
    def input_schema(self) -> dict[str, Any] | None:
        """The JSON Schema of the arguments (typed tools); None for text and task tools."""
        return self.arguments.model_json_schema() if self.arguments is not None else None

    async def run(self, task: Task, ctx: TaskContext | None = None) -> str:
        """Call the function for a task; its return value as the output text."""
        extra = {"ctx": ctx} if self._wants_ctx else {}
        if self._mode == "task":
            out = self.fn(task, **extra)
        elif self._mode == "text":
            out = self.fn(task.instruction, **extra)
        else:
            out = self.fn(**self._parse(task.instruction), **extra)
        if inspect.isawaitable(out):
            out = await out
        return _as_text(out)

    def _parse(self, instruction: str) -> dict[str, Any]:
        assert self.arguments is not None
        names = ", ".join(self.arguments.model_fields) or "none"
        found = _first_object(instruction)
        if found is None:
            if self.arguments.model_fields:
                raise ValueError(
                    f"tool {self.name!r} takes arguments ({names}) as a JSON object in the "
                    f"instruction; found none in {instruction[:80]!r}"
                )
            found = {}
        try:
            valid = self.arguments.model_validate(found)
        except ValidationError as exc:
            raise ValueError(
                f"tool {self.name!r} arguments ({names}): {describe_validation_error(exc)}"
            ) from None
        return {name: getattr(valid, name) for name in self.arguments.model_fields}


@overload
def tool(fn: ToolFn, /) -> Tool: ...


@overload
def tool(
    *, name: str | None = None, capability: str | None = None, description: str | None = None
) -> Callable[[ToolFn], Tool]: ...


def tool(
    fn: ToolFn | None = None,
    /,
    *,
    name: str | None = None,
    capability: str | None = None,
    description: str | None = None,
) -> Tool | Callable[[ToolFn], Tool]:
    """Make a function a tool: ``@tool`` or ``@tool(capability="arithmetic")``."""
    if fn is not None:
        return Tool(fn)
    return lambda f: Tool(f, name=name, capability=capability, description=description)


def _first_object(text: str) -> dict[str, Any] | None:
    decoder = json.JSONDecoder()
    at = text.find("{")
    while at >= 0:
        try:
            value, _ = decoder.raw_decode(text, at)
        except (ValueError, RecursionError):
            at = text.find("{", at + 1)
            continue
        if isinstance(value, dict):
            return value
        at = text.find("{", at + 1)
    return None


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if value is None:
        return ""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return str(value)


class ToolSpecialist(Specialist):
    """A tool as a specialist: deterministic, free, confidence 1 on success."""

    kind = "tool"

    def __init__(self, name: str, fn: ToolFn | Tool) -> None:
        self.model_name = f"tool:{name}"
        self.tool = fn if isinstance(fn, Tool) else Tool(fn, name=name)

    async def handle(self, task: Task, ctx: TaskContext) -> Result:
        start = time.perf_counter()
        text = await self.tool.run(task, ctx)
        usage = Usage(
            model=self.model_name, latency_s=time.perf_counter() - start, calls=1, source="tool"
        )
        return Result(output=text, confidence=1.0, usage=usage, data={"confidence_method": "tool"})


_BIN_OPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY_OPS: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_EXPR = re.compile(r"[-+*/%().\d\s]*\d[-+*/%().\d\s]*")


def safe_eval(expression: str) -> int | float:
    """Evaluate arithmetic (numbers, + - * / // % **, parentheses) without ``eval``."""

    def walk(node: ast.AST) -> int | float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value  # type: ignore[no-any-return]
        if isinstance(node, ast.BinOp) and type(node.op) in _BIN_OPS:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 10**6):
                raise ValueError("exponent too large for the arithmetic tool")
            return _BIN_OPS[type(node.op)](left, right)  # type: ignore[no-any-return]
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY_OPS:
            return _UNARY_OPS[type(node.op)](walk(node.operand))  # type: ignore[no-any-return]
        raise ValueError(f"not allowed in arithmetic: {ast.dump(node)[:60]}")

    if len(expression) > 500:
        raise ValueError("expression longer than 500 characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from exc
    return walk(tree)


def arithmetic_tool(task: Task) -> str:
    """Evaluate the arithmetic expression in the instruction."""
    candidates = [m.group(0).strip() for m in _EXPR.finditer(task.instruction)]
    candidates = [c for c in candidates if re.search(r"\d\s*[-+*/%]", c)] or candidates
    if not candidates:
        raise ValueError(f"no arithmetic expression in {task.instruction!r}")
    expression = max(candidates, key=len)
    value = safe_eval(expression)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{expression} = {value}"


def echo_tool(task: Task) -> str:
    """The instruction, unchanged."""
    return task.instruction


BUILTIN_TOOLS: dict[str, ToolFn] = {"arithmetic": arithmetic_tool, "echo": echo_tool}


def resolve_tool(spec: str, tools: Mapping[str, Tool] | None = None) -> ToolFn | Tool:
    """A tool given to the network by name, a built-in tool name, or
    ``package.module:function``."""
    if tools and spec in tools:
        return tools[spec]
    if spec in BUILTIN_TOOLS:
        return BUILTIN_TOOLS[spec]
    module_name, sep, attr = spec.partition(":")
    if not sep:
        given = f"a tool given to the network ({', '.join(tools)}), " if tools else ""
        raise ConfigError(
            f"unknown tool {spec!r}: use {given}a built-in ({', '.join(BUILTIN_TOOLS)}) "
            "or 'package.module:function'"
        )
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load tool {spec!r}: {exc}") from exc
    if not callable(fn):
        raise ConfigError(f"tool {spec!r} is not callable")
    return fn  # type: ignore[no-any-return]


__all__ = [
    "BUILTIN_TOOLS",
    "Tool",
    "ToolFn",
    "ToolSpecialist",
    "arithmetic_tool",
    "echo_tool",
    "resolve_tool",
    "safe_eval",
    "tool",
]
