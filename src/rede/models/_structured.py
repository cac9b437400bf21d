"""Structured outputs: each server's way of constraining decoding to a JSON Schema.

Every server users run can make a model's reply valid JSON for a schema by construction
(grammar-constrained decoding), but each spells the request differently. Rede calls these
spellings *dialects*:

- ``json_schema``: ``response_format: {"type": "json_schema", "json_schema": {"name": ...,
  "schema": ..., "strict": ...}}``. OpenAI, vLLM, LM Studio, Ollama 0.5+ on ``/v1``.
- ``json_object_schema``: ``response_format: {"type": "json_object", "schema": ...}``.
  llama-cpp-python's server (which answers the ``json_schema`` form with HTTP 500).
- ``ollama_format``: the schema as Ollama's own top-level ``format`` field.
- ``json_object``: ``response_format: {"type": "json_object"}``: valid JSON, any shape.
- ``none``: nothing is sent; the prompt alone asks for JSON.

``auto`` (the default) detects the dialect once per server: it tries ``json_schema``, and on
an HTTP error that names the structured-output parameter falls back to
``json_object_schema``, then ``json_object``, then ``none``. The outcome is remembered per
base URL in a :class:`DialectMemory` (one per network, so every model on the same server
shares it). Whatever the dialect, the reply is still validated by the caller: a schema
cannot say everything (a plan's dependency ids, for one).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from rede.errors import ConfigError

Dialect = Literal["json_schema", "json_object_schema", "ollama_format", "json_object", "none"]
StructuredMode = Literal[
    "auto", "json_schema", "json_object_schema", "ollama_format", "json_object", "none"
]
DIALECTS: tuple[Dialect, ...] = get_args(Dialect)
MODES: tuple[StructuredMode, ...] = get_args(StructuredMode)
DETECTION_ORDER: tuple[Dialect, ...] = ("json_schema", "json_object_schema", "json_object", "none")
"""What ``auto`` tries, in order: at most three rejected requests per server."""
DIALECT_PARAMS = ("response_format", "format")
"""The request fields a dialect sets; an error that names one is a rejection of the dialect."""
REJECTION_WORDS = ("response_format", "json_schema", "format", "schema", "grammar")


def apply_dialect(
    params: dict[str, Any], dialect: Dialect, schema: dict[str, Any], name: str = "reply"
) -> dict[str, Any]:
    """``params`` with the fields that ask for ``schema`` in ``dialect`` (a new dict).

    Fields that go outside the OpenAI client's own parameters (Ollama's ``format``) are put in
    ``extra_body``, which the client merges into the JSON body."""
    out = {k: v for k, v in params.items() if k not in DIALECT_PARAMS}
    if dialect == "json_schema":
        out["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": schema, "strict": is_strict(schema)},
        }
    elif dialect == "json_object_schema":
        out["response_format"] = {"type": "json_object", "schema": schema}
    elif dialect == "json_object":
        out["response_format"] = {"type": "json_object"}
    elif dialect == "ollama_format":
        out["extra_body"] = {**out.get("extra_body", {}), "format": schema}
    return out


def is_strict(schema: Any) -> bool:
    """Whether a schema meets OpenAI's ``strict`` rules: every object closed
    (``additionalProperties: false``) and every property required, throughout."""
    if isinstance(schema, list):
        return all(is_strict(s) for s in schema)
    if not isinstance(schema, dict):
        return True
    if "prefixItems" in schema:  # tuples are outside OpenAI's strict subset
        return False
    props = schema.get("properties")
    if schema.get("type") == "object" or props is not None:
        if schema.get("additionalProperties", True) is not False:
            return False
        if set(props or {}) != set(schema.get("required") or []):
            return False
    return all(is_strict(v) for k, v in schema.items() if k not in ("enum", "const", "required"))


def names_dialect(message: str) -> bool:
    """Whether a server's error message is about the structured-output parameter."""
    lowered = message.lower()
    return any(word in lowered for word in REJECTION_WORDS)


@dataclass
class DialectMemory:
    """What each server (by base URL) was found to accept, shared by the models of a network.

    ``found[url]`` is the dialect that worked; ``rejected[url]`` lists the ones the server
    refused, each with its error, so that the outcome can be reported and recorded."""

    found: dict[str, Dialect] = field(default_factory=dict)
    rejected: dict[str, list[tuple[Dialect, str]]] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict, repr=False)

    def lock(self, url: str) -> asyncio.Lock:
        """Held while a server's dialect is being detected, so it is detected once."""
        return self._locks.setdefault(url, asyncio.Lock())

    def reject(self, url: str, dialect: Dialect, error: str) -> None:
        self.rejected.setdefault(url, []).append((dialect, error[:300]))

    def remember(self, url: str, dialect: Dialect) -> None:
        self.found[url] = dialect

    def candidates(self, url: str) -> list[Dialect]:
        """Dialects still worth trying on a server, in :data:`DETECTION_ORDER`."""
        if url in self.found:
            return [self.found[url]]
        refused = {d for d, _ in self.rejected.get(url, [])}
        return [d for d in DETECTION_ORDER if d not in refused]

    def summary(self, url: str) -> dict[str, Any]:
        """``{"dialect": ..., "rejected": {dialect: error}}``, for the ledger."""
        return {
            "dialect": self.found.get(url),
            "rejected": {d: e for d, e in self.rejected.get(url, [])},
        }


def structured_mode(
    model: str, structured: StructuredMode | None, json_mode: bool | None
) -> StructuredMode:
    """A model's mode from ``structured`` or the older ``json_mode`` switch."""
    if structured is not None and json_mode is not None:
        raise ConfigError(
            f"model {model!r}: give 'structured' or the older 'json_mode', not both "
            f"(json_mode: true is structured: json_object; false is structured: none)"
        )
    if structured is None:
        structured = {True: "json_object", False: "none", None: "auto"}[json_mode]  # type: ignore[assignment]
    if structured not in MODES:
        raise ConfigError(
            f"model {model!r}: unknown structured output mode {structured!r}; "
            f"use one of {', '.join(MODES)}"
        )
    return structured  # type: ignore[return-value]
