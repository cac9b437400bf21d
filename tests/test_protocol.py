"""The rede/1 protocol: round trips, validation errors that name the field, size, signing."""

from __future__ import annotations

import json

import pytest

from rede.errors import MalformedMessage, MessageTooLarge, SignatureError
from rede.protocol.codec import Codec
from rede.protocol.messages import (
    AgentCard,
    ContextItem,
    Critique,
    Envelope,
    ErrorPayload,
    Event,
    Heartbeat,
    InputReply,
    InputRequest,
    Result,
    Task,
    Usage,
    protocol_schema,
)
from rede.protocol.topics import Topic

PAYLOADS = [
    Task(capability="research", instruction="find x", context=[ContextItem(content="c")]),
    Result(output="y", confidence=0.8, usage=Usage(model="m", prompt_tokens=3, cost_usd=0.1)),
    InputRequest(capability="fact_check", question="is x true?"),
    InputReply(answer="yes", confidence=0.9),
    Critique(score=0.4, accepted=False, issues=["thin"], advice="more"),
    Heartbeat(card=AgentCard(id="a-1", name="a", capabilities=["research"])),
    Event(name="step_started", data={"step": "s1"}),
    ErrorPayload(code="malformed", message="bad"),
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.kind)
def test_every_kind_round_trips_through_the_codec(payload) -> None:
    env = Envelope(run_id="r1", step_id="s1", sender="t", payload=payload)
    back = Codec().decode(Codec().encode(env))
    assert back == env
    assert back.kind == payload.kind


def test_validation_error_names_the_field() -> None:
    raw = json.dumps({"sender": "x", "payload": {"kind": "result", "confidence": 1.5}}).encode()
    with pytest.raises(MalformedMessage, match=r"payload\.result\.confidence"):
        Codec().decode(raw)


def test_unknown_kind_and_wrong_version_are_rejected() -> None:
    with pytest.raises(MalformedMessage, match="payload"):
        Codec().decode(b'{"sender": "x", "payload": {"kind": "teleport"}}')
    with pytest.raises(MalformedMessage, match="v"):
        Codec().decode(b'{"v": "rede/9", "sender": "x", "payload": {"kind": "event", "name": "e"}}')


def test_size_limit_is_configurable() -> None:
    env = Envelope(sender="t", payload=Task(capability="c", instruction="x" * 500))
    assert Codec(max_bytes=10_000).encode(env)
    with pytest.raises(MessageTooLarge, match="limit of 300 bytes"):
        Codec(max_bytes=300).encode(env)


def test_signatures_detect_tampering() -> None:
    signed = Codec(signing_key="k").encode(Envelope(sender="t", payload=Event(name="e")))
    assert Codec(signing_key="k").decode(signed).sig
    tampered = signed.replace(b'"name":"e"', b'"name":"f"')
    with pytest.raises(SignatureError, match="forged"):
        Codec(signing_key="k").decode(tampered)


def test_schema_is_exported_with_every_kind() -> None:
    schema = json.dumps(protocol_schema())
    for kind in (
        "task",
        "result",
        "input_request",
        "input_reply",
        "critique",
        "heartbeat",
        "event",
        "error",
    ):
        assert f'"{kind}"' in schema


def test_topics_round_trip_and_reject_bad_names() -> None:
    for topic in (
        Topic.task("research", "researcher-a"),
        Topic.reply("run-1"),
        Topic.registry(),
        Topic.dead(),
        Topic.inbox("a-1"),
    ):
        assert Topic.from_str(str(topic)) == topic
    assert str(Topic.task("research", "r")) == "rede.task.research.r"
    with pytest.raises(ValueError, match="invalid task"):
        Topic.task("re.search", "r")
    with pytest.raises(ValueError, match="unknown topic kind"):
        Topic.from_str("rede.nope")


def test_usage_adds_up_and_keeps_its_source() -> None:
    a = Usage(
        model="m", prompt_tokens=10, completion_tokens=5, cost_usd=0.1, calls=1, source="simulated"
    )
    b = Usage(
        model="m",
        prompt_tokens=1,
        completion_tokens=1,
        cost_usd=0.2,
        calls=1,
        source="simulated",
        estimated=True,
    )
    total = a + b
    assert (total.total_tokens, total.calls, total.source, total.estimated) == (
        17,
        2,
        "simulated",
        True,
    )
    assert total.cost_usd == pytest.approx(0.3)
    assert (a + Usage(source="real")).source == "mixed"
