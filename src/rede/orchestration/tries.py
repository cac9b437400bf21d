"""What one call has tried so far: retries left, the agents that failed it, and a cascade's
escalation state. An agent that failed the call is avoided while another live agent can take
the retry, and tried again when none can (a timeout on the only replica is worth a retry);
one a cascade escalated past is never tried again in this call."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from rede.protocol.messages import Critique, Result
from rede.routing.router import Route


@dataclass
class Tries:
    """What one call has tried so far."""

    left: int
    cascade: bool
    threshold: float
    excluded: set[str] = field(default_factory=set)
    """Never tried again in this call (a cascade escalated past them)."""
    failed_on: set[str] = field(default_factory=set)
    """Tried and failed: avoided while another agent is live, else tried again."""
    failures: list[str] = field(default_factory=list)
    forced: Route | None = None
    """The next route, chosen by an escalation."""
    floor: float | None = None
    """Cascade: after an escalation, retries stay at its tier or above."""
    kept: tuple[Result, Route] | None = None
    """Cascade: the answer that was escalated, kept if no higher tier answers."""

    def failed(self, agent: str, why: str) -> None:
        self.left -= 1
        self.failures.append(f"{agent}: {why}")
        self.failed_on.add(agent)

    def avoid(self, live: Iterable[str]) -> set[str]:
        """The agents the next route must not pick, given the ``live`` ones that could."""
        avoid = self.excluded | self.failed_on
        if any(name not in avoid for name in live):
            return avoid
        return set(self.excluded)  # no other agent is live: the retry goes to one tried


def expected_kind(capability: str, payload: Result | Critique) -> Result | Critique:
    """A critic must answer with a critique and every other capability with a result; a
    reply of the other kind is a failed call, never trusted as it is."""
    expected = "critique" if capability == "critique" else "result"
    if payload.kind == expected or (isinstance(payload, Result) and payload.status == "failed"):
        return payload  # a failed result keeps its own error (a critic's unreadable reply)
    return Result(
        status="failed",
        error=f"replied with a {payload.kind} to a {capability!r} task; expected a {expected}",
        usage=payload.usage,
    )
