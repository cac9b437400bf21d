"""Fuzzers for the three edges where outside data enters Rede: envelopes off the wire, plans
from a planner model, and network YAML from a user. Whatever comes in, the answer is a valid
object or the project's own error with a one-line message; never another exception, never a
hang. More examples: ``HYPOTHESIS_PROFILE=fuzz pytest tests/test_fuzz.py``."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st
from typer.testing import CliRunner

from rede.cli.app import app, demo_network_path
from rede.config import NetworkConfig
from rede.errors import ConfigError, ProtocolError, RedeError
from rede.network import Network
from rede.orchestration.plan import Plan, parse_plan, validate_plan
from rede.protocol.codec import Codec
from rede.protocol.messages import Envelope, Result, Task

pytestmark = pytest.mark.timeout(120)

# --------------------------------------------------------------------------- helpers


def one_line(exc: BaseException) -> str:
    """The error's message, checked to be one non-empty line."""
    message = str(exc)
    assert message.strip(), f"{type(exc).__name__} without a message"
    assert "\n" not in message and "\r" not in message, f"multi-line message: {message!r}"
    return message


def outcome(fn: Callable[[], Any], allowed: type[RedeError]) -> Any:
    """``fn()``'s value, or None when it raised ``allowed`` with a one-line message; any
    other exception fails the test."""
    try:
        return fn()
    except allowed as exc:
        one_line(exc)
        return None


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def mutate(data: Any, draw: st.DrawFn, depth: int = 0) -> Any:
    """``data`` with one random change deep inside: a value replaced, a key dropped or added."""
    if isinstance(data, dict) and data and depth < 6:
        key = draw(st.sampled_from(sorted(data, key=str)))
        action = draw(st.sampled_from(["into", "replace", "drop", "add"]))
        changed = dict(data)
        if action == "into":
            changed[key] = mutate(data[key], draw, depth + 1)
        elif action == "replace":
            changed[key] = draw(json_values)
        elif action == "drop":
            del changed[key]
        else:
            changed[draw(st.text(max_size=10))] = draw(json_values)
        return changed
    if isinstance(data, list) and data and depth < 6:
        i = draw(st.integers(0, len(data) - 1))
        changed_list = list(data)
        action = draw(st.sampled_from(["into", "replace", "drop", "dup"]))
        if action == "into":
            changed_list[i] = mutate(data[i], draw, depth + 1)
        elif action == "replace":
            changed_list[i] = draw(json_values)
        elif action == "drop":
            del changed_list[i]
        else:
            changed_list.append(data[i])
        return changed_list
    return draw(json_values)


@st.composite
def mutated(draw: st.DrawFn, base: Any, rounds: int = 3) -> Any:
    data = base
    for _ in range(draw(st.integers(1, rounds))):
        data = mutate(data, draw)
    return data


@st.composite
def text_mutations(draw: st.DrawFn, text: str) -> str:
    """``text`` with a few spans deleted, duplicated or replaced by random characters."""
    for _ in range(draw(st.integers(1, 3))):
        a = draw(st.integers(0, len(text)))
        b = draw(st.integers(a, min(len(text), a + 40)))
        action = draw(st.sampled_from(["delete", "insert", "dup"]))
        if action == "delete":
            text = text[:a] + text[b:]
        elif action == "insert":
            text = text[:a] + draw(st.text(max_size=12)) + text[a:]
        else:
            text = text[:b] + text[a:b] + text[b:]
    return text


# --------------------------------------------------------------------------- envelopes

VALID = Envelope(
    sender="orchestrator",
    run_id="run-1",
    step_id="s1",
    payload=Task(capability="research", instruction="look it up", request="why?"),
)
VALID_JSON = json.loads(Codec().encode(VALID))
RESULT_JSON = json.loads(
    Codec().encode(VALID.reply(Result(output="done", confidence=0.5), sender="agent"))
)


def decodes(data: bytes, codec: Codec | None = None) -> Envelope | None:
    codec = codec or Codec(max_bytes=200_000)
    return outcome(lambda: codec.decode(data), ProtocolError)


@given(st.binary(max_size=2000))
@example(b"\xff\xfe")
@example(b"")
def test_random_bytes_decode_or_fail_as_protocol_errors(data: bytes) -> None:
    decodes(data)


@given(json_values)
def test_random_json_decodes_or_fails_as_a_protocol_error(value: Any) -> None:
    decodes(json.dumps(value).encode())


@given(mutated(VALID_JSON) | mutated(RESULT_JSON))
def test_mutated_envelopes_decode_or_fail_as_protocol_errors(value: Any) -> None:
    envelope = decodes(json.dumps(value).encode())
    if envelope is not None:  # what decodes encodes and decodes the same
        assert Codec().decode(Codec().encode(envelope)) == envelope


@given(st.integers(1, 20_000), st.sampled_from(["[", '{"a":']))
def test_deeply_nested_json_is_refused_without_recursion(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    decodes((opener * depth + "1" + closer * depth).encode())
    nested_payload = {**VALID_JSON, "payload": {**VALID_JSON["payload"], "metadata": {}}}
    text = json.dumps(nested_payload).replace(
        '"metadata": {}', '"metadata": {"x": ' + nested(depth) + "}"
    )
    decodes(text.encode())


@given(st.integers(0, 300_000), st.sampled_from(["sender", "run_id", "id"]))
def test_huge_strings_decode_or_are_refused_by_size(size: int, field: str) -> None:
    value = {**VALID_JSON, field: "x" * size}
    envelope = decodes(json.dumps(value).encode())
    assert envelope is None or size < 200_000


@given(mutated(VALID_JSON), st.text(max_size=30))
@example({**VALID_JSON, "id": "a\nb"}, "")
@example(VALID_JSON, "\x80")  # a signature that is not ASCII: hmac raised TypeError
def test_signed_codec_refuses_forged_envelopes_in_one_line(value: Any, sig: str) -> None:
    codec = Codec(signing_key="k", max_bytes=200_000)
    decodes(json.dumps({**value, "sig": sig or None}).encode(), codec)


@example({**VALID_JSON, "payload": {**VALID_JSON["payload"], "a\nb": 1}})
@given(mutated(VALID_JSON))
def test_a_field_name_with_a_newline_is_named_on_one_line(value: Any) -> None:
    decodes(json.dumps(value).encode())


# --------------------------------------------------------------------------- plans

CAPS = ["research", "write", "synthesise", "critique"]
PLAN = {
    "intent": "compose",
    "steps": [
        {"id": "a", "capability": "research", "instruction": "find"},
        {"id": "b", "capability": "research", "instruction": "find more"},
        {"id": "c", "capability": "write", "instruction": "write", "depends_on": ["a", "b"]},
    ],
}


def plans_from(text: str) -> Plan | None:
    plan = outcome(lambda: parse_plan(text, CAPS, max_steps=6), RedeError)
    if plan is not None:  # a plan that parses is one the orchestrator can run
        assert len(plan.steps) <= 6
        assert {s.capability for s in plan.steps} <= set(CAPS) - {"critique"}
        validate_plan(plan, CAPS, max_steps=6)
    return plan


@given(mutated(PLAN, rounds=4))
@example({"steps": [{"id": "a", "capability": "re\nsearch", "instruction": "x"}]})
@example(
    {"steps": [{"id": "a", "capability": "research", "instruction": "x", "depends_on": ["\n"]}]}
)
@example({"steps": [{"id": "a", "capability": "research", "instruction": "x", "a\nb": 1}]})
@example(
    {"steps": [{"id": "a", "capability": "research", "instruction": "x", "depends_on": ["a"]}]}
)
def test_mutated_plans_parse_or_fail_with_one_line(value: Any) -> None:
    plans_from(json.dumps(value))


@given(st.text(max_size=300) | json_values.map(json.dumps))
@example("```json\n" + nested(5000) + "\n```")
@example("{" * 5000)
@example('chatter {"steps": ' + nested(3000, "{}") + "} more")
def test_random_planner_replies_parse_or_fail_with_one_line(text: str) -> None:
    plans_from(text)


@given(text_mutations(json.dumps(PLAN)))
def test_damaged_plan_text_parses_or_fails_with_one_line(text: str) -> None:
    plans_from(text)


# --------------------------------------------------------------------------- network YAML

DEMO_TEXT = demo_network_path().read_text()
DEMO = yaml.safe_load(DEMO_TEXT)
runner = CliRunner()


def loads_network(text: str) -> NetworkConfig | None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "network.yaml"
        path.write_text(text)
        conf = outcome(lambda: NetworkConfig.from_yaml(path), ConfigError)
        built = None
        if conf is not None:  # what `rede validate` checks beyond the YAML: models, tools
            built = outcome(lambda: [Network(conf).spec(a) for a in conf.agents], RedeError)
        result = runner.invoke(app, ["validate", str(path)])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code == (0 if built is not None else 1), result.output
    return conf


def test_the_demo_network_loads() -> None:
    assert loads_network(DEMO_TEXT) is not None


@given(mutated(DEMO, rounds=3))
def test_mutated_demo_networks_load_or_fail_with_one_line(value: Any) -> None:
    loads_network(yaml.safe_dump(value))


@given(text_mutations(DEMO_TEXT))
@example(DEMO_TEXT + "\n  broken: [\n")
@example(DEMO_TEXT.replace("research-team", "research-team\nextra: {"))
@example("created: 2001-13-01\n")  # a timestamp YAML resolves but cannot build
@example(DEMO_TEXT.replace("{critique: 0.85}", "{ 0.85}"))  # sim overrides: raw ValidationError
@example(DEMO_TEXT.replace("name: research-team", "name: [1, 2"))
def test_damaged_demo_yaml_loads_or_fails_with_one_line(text: str) -> None:
    loads_network(text)


@given(json_values)
def test_random_yaml_documents_load_or_fail_with_one_line(value: Any) -> None:
    loads_network(yaml.safe_dump(value))


@given(st.text(max_size=200))
@example("a: !!python/object:os.system {}\n")
@example("- " * 2000 + "x")
@example("\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"))
def test_random_text_as_yaml_loads_or_fails_with_one_line(text: str) -> None:
    loads_network(text)


def test_a_network_file_that_is_not_utf8_is_a_config_error() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "network.yaml"
        path.write_bytes(b"name: \xff\xfe\n")
        with pytest.raises(ConfigError, match="not UTF-8") as info:
            NetworkConfig.from_yaml(path)
        one_line(info.value)
        result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
