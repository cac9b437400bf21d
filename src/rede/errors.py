"""Every error Rede raises, in one hierarchy.

    RedeError
    ├── ConfigError              a network YAML or an option is invalid
    ├── MissingExtra             an optional part is used without the extra that installs it
    ├── RemoteAgentError         an MCP server or remote A2A agent failed to start, answer or fit
    ├── ProtocolError            a message on the bus is not a valid envelope
    │   ├── MalformedMessage     it does not parse or validate (names the field)
    │   ├── MessageTooLarge      it is over the configured size limit
    │   └── SignatureError       it is unsigned or forged while a signing key is set
    ├── BusError                 the bus cannot do what was asked
    │   └── ClosedBusError       the bus or subscription was closed
    ├── ModelError               a model backend failed
    │   ├── ModelResponseError   the server answered with something that is not a completion
    │   ├── InvalidModelRequest  the server refused the request as invalid (not retried)
    │   │   └── ContextLengthExceeded  the prompt and max_tokens exceed the context window
    │   └── ModelUnavailable     retries exhausted (HTTP 429/5xx, timeouts, connection refused)
    ├── PlanError                a plan is invalid (cycle, unknown capability, too large)
    ├── UnknownStep              a plan or run has no step of that id (also a KeyError)
    ├── UnknownCapability        no agent in the network serves a capability
    ├── StepFailed               a step failed on every agent that could take it
    │   └── StepsFailed          every step of a plan failed: nothing to answer with
    ├── RunTakenOver             another orchestrator holds the run now (this one stalled)
    ├── Busy                     a run was refused up front: too many running; retry later
    └── RunLimitExceeded         a run hit a hard limit (steps, rounds, time, cost, tokens)

Every message says what was wrong and, where it can, what to do about it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def one_line(text: str) -> str:
    """``text`` with its line breaks escaped: error messages are one line, even where they
    quote input (a field name, a model's reply, a YAML parser's report)."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


class RedeError(Exception):
    """Root of every error raised by Rede.

    An error that ends a run carries the partial run record in ``run`` (a ``RunResult``:
    the steps done, usage spent, envelopes and decisions), so nothing is lost."""

    run: Any = None


class ConfigError(RedeError):
    """A network description or an option is invalid."""


class RemoteAgentError(RedeError):
    """An MCP server or a remote A2A agent cannot be started or reached, or answered with
    something that does not fit (a result off its schema, a malformed agent card)."""


class MissingExtra(RedeError):
    """A part of Rede was used without the optional packages it needs (``rede[EXTRA]``)."""

    def __init__(self, what: str, extra: str, missing: str, instead: str = "") -> None:
        self.extra = extra
        self.missing = missing
        super().__init__(
            f"{what} needs the '{extra}' extra (no module named {missing!r}): "
            f'pip install "rede[{extra}]" (from a checkout: pip install -e ".[{extra}]")'
            + (f"; or {instead}" if instead else "")
        )


class ProtocolError(RedeError):
    """A message received from the bus is not a valid Rede envelope."""


class MalformedMessage(ProtocolError):
    """The bytes do not parse as JSON or do not validate against the envelope schema."""


class MessageTooLarge(ProtocolError):
    """An envelope is larger than the bus's configured limit."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"message of {size} bytes is over the limit of {limit} bytes "
            "(raise max_message_bytes on the bus, or send less context)"
        )


class SignatureError(ProtocolError):
    """An envelope is unsigned or its signature does not match the shared key."""


class BusError(RedeError):
    """The bus cannot do what was asked."""


class ClosedBusError(BusError):
    """The bus or the subscription is closed."""


class ModelError(RedeError):
    """A model backend failed."""


class ModelResponseError(ModelError):
    """A model server answered with something that is not a valid completion."""


class InvalidModelRequest(ModelError):
    """A model server refused a request as invalid: retrying the same request cannot help.

    Whatever the status: llama-cpp-python answers its own validation errors with HTTP 500."""


class ContextLengthExceeded(InvalidModelRequest):
    """The prompt and ``max_tokens`` do not fit the model's context window."""


class ModelUnavailable(ModelError):
    """A model server could not be reached or kept failing after retries."""


class PlanError(RedeError):
    """A plan is invalid: a cycle, an unknown capability, a missing dependency, too many steps."""


class UnknownStep(RedeError, KeyError):
    """A plan or a run record has no step of that id."""

    def __init__(self, step_id: str, known: Iterable[str], where: str) -> None:
        self.step_id = step_id
        self.known = list(known)
        super().__init__(
            f"no step {step_id!r} in {where}; steps: {', '.join(self.known) or '(none)'}"
        )

    def __str__(self) -> str:  # not KeyError's quoted repr
        return str(self.args[0])


class UnknownCapability(RedeError):
    """No agent in the network serves the capability."""

    def __init__(self, capability: str, known: Iterable[str], where: str = "") -> None:
        self.capability = capability
        self.known = sorted(set(known))
        loc = f" in {where}" if where else ""
        super().__init__(
            f"unknown capability {capability!r}{loc}; known: {', '.join(self.known) or '(none)'}"
        )


class StepFailed(RedeError):
    """A step failed on every agent that could take it (``by_person``: a person rejected its
    output, or did not answer in time, and the run's policy does not bypass a person)."""

    def __init__(self, step_id: str, reason: str, *, by_person: bool = False) -> None:
        self.step_id = step_id
        self.reason = reason
        self.by_person = by_person
        super().__init__(f"step {step_id!r} failed: {reason}")


class StepsFailed(StepFailed):
    """Every step of a plan failed (each under a policy that let the run go on): the run
    has nothing to answer with. ``failures``: step id -> why it failed."""

    def __init__(self, failures: dict[str, str]) -> None:
        self.failures = failures
        if len(failures) == 1:
            super().__init__(*next(iter(failures.items())))
            return
        RedeError.__init__(
            self,
            "every step of the plan failed: "
            + "; ".join(f"{step!r}: {why}" for step, why in failures.items()),
        )
        self.step_id, self.reason = ", ".join(failures), str(self)


class RunTakenOver(RedeError):
    """Another orchestrator took the run over (this one's lease on it lapsed, so the run
    looked orphaned): this one stops and leaves it to the new holder."""

    def __init__(self, run_id: str, owner: str) -> None:
        super().__init__(
            f"run {run_id} is held by another orchestrator now ({owner}): this one let its "
            "lease lapse (stalled past durable.lease_s) and stops; the new holder finishes it"
        )
        self.run_id, self.owner = run_id, owner


class Busy(RedeError):
    """A run was refused before it started: the network runs its limit of runs at once
    (``limits.max_runs``). Nothing was spent; send it again after ``retry_after_s``."""

    def __init__(self, network: str, running: int, limit: int, retry_after_s: int) -> None:
        super().__init__(
            f"busy: network {network!r} is running {running} runs, its limit "
            f"(limits.max_runs={limit}); retry after {retry_after_s} s"
        )
        self.network, self.running, self.limit = network, running, limit
        self.retry_after_s = retry_after_s


class RunLimitExceeded(RedeError):
    """A run reached one of its hard limits."""

    def __init__(self, limit: str, value: float, spent: float, detail: str = "") -> None:
        self.limit = limit
        self.value = value
        self.spent = spent
        extra = f": {detail}" if detail else ""
        super().__init__(f"run limit {limit}={value:g} reached (spent {spent:g}){extra}")
