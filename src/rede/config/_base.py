"""What every part of the configuration shares: names, the base model, YAML reading."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
)

from rede.errors import ConfigError, one_line
from rede.protocol.codec import describe_validation_error

NAME = r"^[A-Za-z0-9_\-]+$"
META_CAPABILITIES = frozenset({"plan", "critique", "synthesise"})
"""Capabilities the orchestrator itself calls on: planning, review, the final answer."""
WELL_KNOWN = META_CAPABILITIES | {"research", "write", "arithmetic"}
"""Capabilities with a bundled prompt or tool: a name just short of one is a misspelling."""


def misspelt(capability: str) -> str | None:
    """The well-known capability ``capability`` looks like a misspelling of, if any."""
    if capability in WELL_KNOWN:
        return None
    for known in sorted(WELL_KNOWN):
        if capability.startswith(known) or known.startswith(capability):
            continue  # 'writer', 'researching': another name, not a typo
        if difflib.SequenceMatcher(None, capability, known).ratio() >= 0.85:
            return known
    return None


M = TypeVar("M", bound=BaseModel)


class _Conf(BaseModel):
    model_config = ConfigDict(extra="forbid")


def read_yaml(path: Path, what: str) -> Any:
    """The parsed content of a YAML file; a ConfigError naming the file if it cannot be."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what} file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = one_line(" ".join(filter(None, (exc.context, exc.problem))))
        raise ConfigError(f"{path} is not valid YAML: {problem}{where}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {one_line(str(exc))}") from None
    except RecursionError:
        raise ConfigError(f"{path} is nested too deeply to be a {what} file") from None
    except ValueError as exc:  # a scalar YAML resolves but cannot build (2001-13-01)
        raise ConfigError(f"{path} has a value YAML cannot read: {one_line(str(exc))}") from None


def validate_mapping(model: type[M], data: Any, *, source: str, what: str, key: str) -> M:
    """``data`` validated as ``model``; a ConfigError that names ``source`` and the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {what} must be a mapping with {key!r}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {config_error(model, exc)}") from exc


def config_error(model: type[BaseModel], exc: ValidationError) -> str:
    """A validation error in the YAML's words: a misspelt key gets "did you mean", and a
    check of the whole network speaks for itself (no pydantic "Value error," prefix)."""
    hints = []
    for err in exc.errors()[:5]:
        if err["type"] == "extra_forbidden":
            *parent, key = err["loc"]
            fields = _fields_at(model, parent)
            close = difflib.get_close_matches(str(key), fields, n=1, cutoff=0.7)
            if close:
                hints.append(f"unknown key {key!r}: did you mean {close[0]!r}?")
    text = describe_validation_error(exc).replace("(root): Value error, ", "")
    text = text.replace(": Value error, ", ": ")
    return "; ".join([*hints, text])


def _fields_at(model: type[BaseModel], loc: list[Any]) -> list[str]:
    """The field names of the model found at ``loc`` inside ``model`` (list items, dict
    values and optional fields followed), or none where the path leaves the models."""
    current: Any = model
    for part in loc:
        is_model = isinstance(current, type) and issubclass(current, BaseModel)
        if isinstance(part, int) or not is_model:
            continue  # a list index or a dict key: the item's type is already in hand
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    """The pydantic model inside ``X``, ``X | None``, ``list[X]`` or ``dict[str, X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
