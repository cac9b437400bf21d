"""Topic names as small validated values, never strings formatted all over the code.

rede.task.<capability>.<agent>   tasks for one agent (its replicas compete in one group)
rede.reply.<owner>               results and requests flowing back to an orchestrator (one
                                 topic for all its live runs, told apart by ``run_id``)
rede.inbox.<agent_id>            replies to one agent instance (input_reply)
rede.bids.<capability>           calls for bids (fan-out to every agent with the capability)
rede.runtime.registry                    heartbeats (fan-out)
rede.events                      events for observers (fan-out)
rede.dead                        dead letters: malformed, oversized, forged, or undeliverable

Reply and inbox topics are *ephemeral* (:attr:`Topic.ephemeral`): each belongs to one
orchestrator (while it has live runs) or one agent instance, whose subscription makes and
keeps its stream; a publish to one whose stream is gone is dropped.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

TopicKind = Literal["task", "reply", "inbox", "bids", "registry", "events", "dead"]

_PART = re.compile(r"^[A-Za-z0-9_\-]+$")
_SINGLE: tuple[TopicKind, ...] = ("registry", "events", "dead")
_EPHEMERAL: frozenset[TopicKind] = frozenset({"reply", "inbox"})


@functools.lru_cache(maxsize=4096)
def _check_part(name: str, value: str) -> str:
    """Cached: the same few capabilities, agents and runs make every topic of a network."""
    if not _PART.match(value):
        raise ValueError(
            f"invalid {name} {value!r} in a topic: use letters, digits, '_' and '-' only"
        )
    return value


@dataclass(frozen=True, slots=True)
class Topic:
    kind: TopicKind
    parts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for part in self.parts:
            _check_part(self.kind, part)

    def __str__(self) -> str:
        return ".".join(("rede", self.kind, *self.parts))

    @property
    def ephemeral(self) -> bool:
        """Whether the topic lives only as long as its owner, one run's orchestrator or one
        agent instance (reply and inbox topics): only a subscribe makes its stream, a live
        subscriber keeps it, a publish to a missing one is dropped (never creating it), and
        one its subscribers all left undeleted (a killed owner) expires after
        ``BusOptions.ephemeral_ttl_s``, so finished runs and dead replicas leave nothing."""
        return self.kind in _EPHEMERAL

    @classmethod
    def task(cls, capability: str, agent: str) -> Topic:
        return cls("task", (capability, agent))

    @classmethod
    def reply(cls, owner: str) -> Topic:
        """The reply topic of ``owner``: an orchestrator's id (its runs share it), or any
        one-off requester's (an auction's private topic, a run of one's own)."""
        return cls("reply", (owner,))

    @classmethod
    def inbox(cls, agent_id: str) -> Topic:
        return cls("inbox", (agent_id,))

    @classmethod
    def bids(cls, capability: str) -> Topic:
        return cls("bids", (capability,))

    @classmethod
    def registry(cls) -> Topic:
        return cls("registry")

    @classmethod
    def events(cls) -> Topic:
        return cls("events")

    @classmethod
    def dead(cls) -> Topic:
        return cls("dead")

    @classmethod
    def from_str(cls, text: str) -> Topic:
        return _parse(text)

    @classmethod
    def _parse(cls, text: str) -> Topic:
        pieces = text.split(".")
        if len(pieces) < 2 or pieces[0] != "rede":
            raise ValueError(f"not a Rede topic: {text!r} (expected 'rede.<kind>...')")
        kind, parts = pieces[1], tuple(pieces[2:])
        expected = {"task": 2, "reply": 1, "inbox": 1, "bids": 1}
        if kind in _SINGLE:
            want = 0
        elif kind in expected:
            want = expected[kind]
        else:
            raise ValueError(f"unknown topic kind {kind!r} in {text!r}")
        if len(parts) != want:
            raise ValueError(f"topic {text!r} needs {want} part(s) after 'rede.{kind}'")
        return cls(kind, parts)  # type: ignore[arg-type]


_parse = functools.lru_cache(maxsize=4096)(Topic._parse)
"""``Topic.from_str``, cached: every task's reply topic is parsed by the agent that answers."""
