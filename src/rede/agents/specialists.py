"""Specialists: what an agent does with one task. LLM specialists and tool specialists speak
the same protocol, so the planner tells them apart only by cost and confidence.

A specialist is pure logic: ``await specialist.handle(task, ctx)`` returns a ``Result`` (or a
``Critique`` for the ``critique`` capability). Delivery, acknowledgement, heartbeats and
replies are the :class:`~rede.agent.AgentRunner`'s job.
"""

from __future__ import annotations

import abc
import functools
import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Any, Protocol

from pydantic import ValidationError

from rede.errors import ConfigError
from rede.models._base import ChatModel, ModelRequest
from rede.protocol.codec import describe_validation_error
from rede.protocol.messages import Budget, Critique, Result, Task, Usage

SCORES = [round(i / 20, 2) for i in range(21)]
CRITIQUE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        # an enum, not minimum/maximum: llama.cpp's grammar does not bound numbers
        "score": {"enum": SCORES},
        "accepted": {"type": "boolean"},
        "issues": {"type": "array", "items": {"type": "string", "maxLength": 160}, "maxItems": 4},
        "advice": {"type": "string", "maxLength": 400},
        "confidence": {"enum": SCORES},
    },
    "required": ["score", "accepted", "issues", "advice", "confidence"],
    "additionalProperties": False,
}
"""What a critic's server constrains its reply to: a valid :class:`Critique` by construction
(scores on a 0.05 grid, sizes bounded)."""
CONFIDENCE_LINE = re.compile(r"^\s*CONFIDENCE:\s*([01](?:\.\d+)?|\.\d+)\s*$", re.M | re.I)


class TaskContext(Protocol):
    """What a specialist may do beyond its own work: ask another capability a question."""

    async def ask(self, capability: str, question: str) -> str: ...


class _NoContext:
    async def ask(self, capability: str, question: str) -> str:
        raise RuntimeError("this specialist is not running on a bus; it cannot ask others")


NO_CONTEXT: TaskContext = _NoContext()


class Specialist(abc.ABC):
    kind: str = "llm"
    model_name: str = ""
    simulated: bool = False

    @abc.abstractmethod
    async def handle(self, task: Task, ctx: TaskContext) -> Result | Critique: ...


# --------------------------------------------------------------------------- prompts


TEMPLATE_VARIABLES = frozenset(
    {
        "request",
        "request_block",
        "instruction",
        "capability",
        "context",
        "acceptance",
        "draft",
        "capabilities",
        "schema",
    }
)
"""What a prompt template may use (``$name`` or ``${name}``)."""


def check_template(text: str, where: str) -> None:
    """A ConfigError naming any ``$variable`` a template uses that is never filled in."""
    unknown = sorted(set(Template(text).get_identifiers()) - TEMPLATE_VARIABLES)
    if unknown:
        raise ConfigError(
            f"{where} uses unknown variable(s) {', '.join('$' + u for u in unknown)}; "
            f"a template may use {', '.join('$' + v for v in sorted(TEMPLATE_VARIABLES))} "
            "(write $$ for a literal $)"
        )


@functools.cache
def load_prompt(capability: str) -> str:
    """The bundled template for a capability (``prompts/<capability>.txt``) or the default.
    Read once per capability: the files ship with the package and do not change under it."""
    folder = resources.files("rede.agents") / "prompts"
    for name in (f"{capability}.txt", "default.txt"):
        path = folder / name
        if path.is_file():
            return path.read_text()
    raise ConfigError("the bundled prompts are missing from the rede package")


def render_context(task: Task) -> str:
    if not task.context:
        return ""
    blocks = []
    for item in task.context:
        head = f"[{item.step_id or 'context'}" + (
            f" · {item.capability}]" if item.capability else "]"
        )
        blocks.append(f"{head}\n{item.content}")
    return "\nMaterial from other agents:\n\n" + "\n\n".join(blocks) + "\n"


def split_confidence(text: str) -> tuple[str, float | None]:
    """Remove a trailing ``CONFIDENCE: x`` line; return the text and x (None if absent)."""
    matches = list(CONFIDENCE_LINE.finditer(text))
    if not matches:
        return text.strip(), None
    last = matches[-1]
    value = min(1.0, max(0.0, float(last.group(1))))
    return (text[: last.start()] + text[last.end() :]).strip(), value


def parse_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in a model's reply (code fences and chatter around it allowed).

    Raw control characters (a newline) inside strings are accepted: llama-cpp-python's schema
    grammars allow them (its ``char`` rule is ``[^"\\]``), so a reply decoded under a schema
    by that server, or by the ``llamacpp`` backend, may hold them."""
    stripped = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
    try:
        value = json.loads(stripped, strict=False)
    except RecursionError:
        raise ValueError(f"the reply's JSON is nested too deeply: {text[:60]!r}...") from None
    except json.JSONDecodeError:
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end <= start:
            raise ValueError(f"no JSON object in the reply: {text[:200]!r}") from None
        try:
            value = json.loads(text[start : end + 1], strict=False)
        except RecursionError:
            raise ValueError(f"the reply's JSON is nested too deeply: {text[:60]!r}...") from None
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"the reply's JSON does not parse ({exc.msg}): {text[:200]!r}"
            ) from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


class LLMSpecialist(Specialist):
    """A prompt template per capability around one chat model.

    Confidence is taken, in order, from: a ``CONFIDENCE: x`` line the model was asked to
    write (self-reported); the mean token probability when the server returns log-probs;
    else 0.5, with the method recorded in ``result.data["confidence_method"]``. With
    ``confidence="logprobs"`` log-probabilities are requested from the server and come
    first (agreement of k samples wraps any specialist: :mod:`rede.agents.confidence`)."""

    kind = "llm"

    def __init__(
        self,
        model: ChatModel,
        prompts: dict[str, str] | None = None,
        *,
        confidence: str = "self",
    ) -> None:
        if confidence not in ("self", "logprobs"):
            raise ConfigError(
                f"LLMSpecialist confidence must be 'self' or 'logprobs', not {confidence!r}"
            )
        self.model = model
        self.model_name = model.name
        self.simulated = model.source == "simulated"
        self._prompts = dict(prompts or {})
        self._templates: dict[str, Template] = {}
        self.confidence = confidence

    def prompt(self, capability: str) -> Template:
        template = self._templates.get(capability)
        if template is None:  # parsed once per capability, not once per call
            template = Template(self._prompts.get(capability) or load_prompt(capability))
            self._templates[capability] = template
        return template

    def _request(self, task: Task) -> ModelRequest:
        request = task.request or task.instruction
        same = request.strip() == task.instruction.strip()
        values = {
            "request": request,
            # The bundled templates show the request only when the step's instruction is not
            # the request itself, so a one-step run does not pay for its prompt twice.
            "request_block": "" if same else f"User request: {request}\n\n",
            "instruction": task.instruction,
            "capability": task.capability,
            "context": render_context(task),
            "acceptance": task.acceptance or "answers the request correctly and completely",
            "draft": task.context[-1].content if task.context else task.instruction,
            "capabilities": ", ".join(task.metadata.get("capabilities", [])),
            "schema": json.dumps(task.metadata["schema"]) if "schema" in task.metadata else "{}",
        }
        text = self.prompt(task.capability).safe_substitute(values)
        metadata = {
            **task.metadata,
            "capability": task.capability,
            "instruction": task.instruction,
            "request": task.request,
            "context_steps": [c.step_id for c in task.context],
        }
        metadata.pop("schema", None)
        metadata.pop("output_schema", None)
        schema = self.output_schema(task)
        return ModelRequest.of(
            text,
            json_schema=schema,
            logprobs=self.confidence == "logprobs" and schema is None,
            metadata=metadata,
        )

    @staticmethod
    def output_schema(task: Task) -> dict[str, Any] | None:
        """The JSON Schema the model's reply must match, sent to servers that constrain
        decoding: a plan's (from the dispatcher), a critique's, or a step's ``output_schema``."""
        if task.capability == "plan":
            schema = task.metadata.get("output_schema") or task.metadata.get("schema")
            return schema if isinstance(schema, dict) else {"type": "object"}
        if task.capability == "critique":
            return CRITIQUE_SCHEMA
        schema = task.metadata.get("output_schema")
        return schema if isinstance(schema, dict) else None

    async def handle(self, task: Task, ctx: TaskContext) -> Result | Critique:
        request = within_budget(self.model, self._request(task), task.budget)
        if isinstance(request, Result):
            return request
        response = await self.model.complete(request)
        structured = {"structured": response.structured} if response.structured else {}
        if task.capability == "critique":
            critique = self._critique(response.text, response.usage)
            critique.data = structured or None
            return critique
        if task.capability == "plan":
            return Result(
                output=response.text.strip(),
                confidence=0.5,
                usage=response.usage,
                data={"confidence_method": "none", **structured},
            )
        text, confidence = split_confidence(response.text)
        method = "self_reported"
        if response.logprobs and (confidence is None or self.confidence == "logprobs"):
            confidence = math.exp(sum(response.logprobs) / len(response.logprobs))
            method = "logprobs"
        if confidence is None:
            confidence, method = 0.5, "none"
        return Result(
            output=text,
            confidence=confidence,
            usage=response.usage,
            data={"confidence_method": method, **structured},
        )

    def _critique(self, text: str, usage: Usage) -> Critique:
        try:
            data = parse_json_object(text)
            data.pop("kind", None)
            data.pop("usage", None)
            data.pop("data", None)
            data.setdefault("confidence", 0.5)
            return Critique.model_validate({**data, "usage": usage})
        except (ValueError, ValidationError) as exc:
            detail = (
                describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
            )
            raise ValueError(f"critic reply is not a valid critique: {detail}") from exc


# --------------------------------------------------------------------------- budgets


def within_budget(model: ChatModel, request: ModelRequest, budget: Budget) -> ModelRequest | Result:
    """``request`` with its completion capped (``max_tokens``) so that the call spends no
    more than the task's budget: ``budget.max_tokens`` counts prompt and completion together,
    ``budget.max_cost_usd`` is priced at the model's prices, and the prompt is counted as the
    model's backend will count it. When the prompt alone leaves no room, a failed result
    marked ``over_budget`` (nothing was spent) instead."""
    if budget.max_tokens is None and budget.max_cost_usd is None:
        return request
    prompt = model.prompt_tokens_bound(request)
    room = None if budget.max_tokens is None else budget.max_tokens - prompt
    if budget.max_cost_usd is not None:
        price, cap = model.price, budget.max_cost_usd
        if price.cost(prompt, 0) > cap:
            room = 0
        elif price.output_per_1k > 0:
            by_cost = int(min((cap - price.cost(prompt, 0)) * 1000 / price.output_per_1k, 2**31))
            while by_cost > 0 and price.cost(prompt, by_cost) > cap:  # float rounding
                by_cost -= 1
            room = by_cost if room is None else min(room, by_cost)
    if room is not None and room < 1:
        return Result(
            status="failed",
            error=(
                f"over budget: the prompt is {prompt} tokens and the task's budget "
                f"(max_tokens={budget.max_tokens}, max_cost_usd={budget.max_cost_usd}) "
                "leaves no room for an answer; not sent to the model"
            ),
            data={"over_budget": {"prompt_tokens": prompt}},
        )
    if room is None:
        return request
    return request.model_copy(update={"max_tokens": min(room, request.max_tokens or room)})


# --------------------------------------------------------------------------- tools


@dataclass
class SpecialistSpec:
    """Everything needed to start one agent: its name, capabilities and logic."""

    name: str
    capabilities: list[str]
    specialist: Specialist
    price_in_per_1k: float = 0.0
    price_out_per_1k: float = 0.0
    quality: float = 0.5
    tier: int = 0
    context_window: int = 8192
    concurrency: int = 4
