"""The sections of a network description: models, agents, routing, limits, spawning, bus."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from rede.config._base import NAME, _Conf
from rede.config.remote import A2aConfig, McpConfig
from rede.models._base import Price


class ModelConfig(_Conf):
    spec: str
    """``backend:argument``: ``sim:7b``, ``openai:llama3.1:8b``, ``replay:PATH``,
    ``llamacpp:PATH.gguf``, ``llamacpp:smollm2``."""
    base_url: str | None = None
    api_key: str | None = None
    price: Price | None = None
    seed: int = 0
    time_scale: float | None = None
    """Sim models only: multiply simulated latency (0 = instant)."""
    sim: dict[str, Any] | None = None
    """Sim models only: overrides of the profile (quality, ttft_s, failure_rate, ...)."""
    json_mode: bool | None = None
    structured: (
        Literal["auto", "json_schema", "json_object_schema", "ollama_format", "json_object", "none"]
        | None
    ) = None
    """OpenAI models only: how a JSON schema is sent so the server constrains decoding to it
    (``auto``, the default, detects it once per server). See ``rede.models._structured``."""
    timeout_s: float | None = None
    """OpenAI models only: the longest wait for an answer, per attempt (per read, streamed)."""
    total_timeout_s: float | None = Field(None, gt=0)
    """OpenAI models only: the longest a streamed answer may take from its start to its
    last chunk (default ``timeout_s``): a server that drips chunks is cut off then."""
    slots: int | None = Field(None, ge=1, le=64)
    """llamacpp models only: calls run at once, each in its own llama.cpp context (default 2)."""
    threads: int | None = Field(None, ge=1, le=256)
    """llamacpp models only: CPU threads per slot (default: the cores shared among slots)."""
    n_ctx: int | None = Field(None, ge=256)
    """llamacpp models only: the context window of each slot, in tokens (default 4096)."""
    max_tokens: int | None = Field(None, ge=1)
    """llamacpp and openai models (and sim models pointed at a server with ``--base-url``):
    the completion cap of a call that sets none and has no JSON schema (llamacpp default
    256; openai: the server's)."""
    cache_prompt: bool | None = None
    """llamacpp models only: reuse a slot's KV cache for a prompt's shared prefix (default
    true)."""


CONFIDENCE_METHODS = ("self", "logprobs", "agreement")


class ConfidenceConfig(_Conf):
    """How an LLM agent's results get their confidence (``confidence:`` of an agent).

    ``self``: the ``CONFIDENCE: x`` line the prompt asks the model for (the default; the
    server's log-probabilities if it returns some and no line was written). ``logprobs``:
    log-probabilities are requested from the server and preferred, ``exp(mean(logprobs))``
    of the completion's tokens (the line, then 0.5, where the server returns none).
    ``agreement``: ``k`` samples of the task; the majority answer, with confidence = the
    share of samples that agree with it (see :mod:`rede.agents.confidence`). Costs k calls."""

    method: str = "self"
    k: int | None = Field(None, ge=2, le=32)
    """Samples for ``agreement`` (default 5)."""

    @field_validator("method")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in CONFIDENCE_METHODS:
            raise ValueError(
                f"unknown confidence method {value!r}; use one of {', '.join(CONFIDENCE_METHODS)}"
            )
        return value

    @model_validator(mode="after")
    def _k_for_agreement(self) -> ConfidenceConfig:
        if self.k is not None and self.method != "agreement":
            raise ValueError(f"k applies to method 'agreement' only, not {self.method!r}")
        if self.method == "agreement" and self.k is None:
            self.k = 5
        return self


class AgentConfig(_Conf):
    name: str = Field(pattern=NAME)
    capabilities: list[str] = Field(default_factory=list)
    """What the agent serves. ``mcp`` and ``a2a`` agents: found from the server when the
    network starts (given here, each must be found there)."""
    model: str | None = None
    """A key of ``models`` (LLM agents)."""
    tool: str | None = None
    """A built-in tool name (``arithmetic``, ``echo``) or ``module:function`` (tool agents)."""
    mcp: McpConfig | None = None
    a2a: A2aConfig | None = None
    prompts: dict[str, str] = Field(default_factory=dict)
    """Per capability: a prompt template text, or a path (relative to the YAML) to one."""
    replicas: int = Field(1, ge=1, le=64)
    concurrency: int = Field(4, ge=1, le=256)
    tier: int = Field(0, ge=0)
    quality: float | None = Field(None, ge=0, le=1)
    """Declared prior quality for routing; defaults to the sim profile's or 0.5."""
    context_window: int | None = None
    confidence: ConfidenceConfig | None = None
    """How results get their confidence: ``self`` (default), ``logprobs``, or
    ``{method: agreement, k: 3}``. LLM agents only."""

    @field_validator("confidence", mode="before")
    @classmethod
    def _method_alone(cls, value: Any) -> Any:
        return {"method": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_kind(self) -> AgentConfig:
        kinds = [k for k in ("model", "tool", "mcp", "a2a") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                f"agent {self.name!r} needs exactly one of 'model', 'tool', 'mcp' or 'a2a'"
            )
        if not self.remote and not self.capabilities:
            raise ValueError(f"agent {self.name!r} needs at least one capability")
        if self.tool is None and self.model is None and self.confidence is not None:
            raise ValueError(f"agent {self.name!r}: 'confidence' applies to model agents")
        if self.tool is not None and self.confidence is not None:
            raise ValueError(
                f"agent {self.name!r}: 'confidence' applies to model agents; a tool's "
                "successful result has confidence 1"
            )
        for cap in self.capabilities:
            if not re.match(NAME, cap):
                raise ValueError(f"capability {cap!r} of agent {self.name!r} is not a valid name")
        return self

    @property
    def remote(self) -> bool:
        """An MCP or A2A agent: its capabilities are found when the network starts."""
        return self.mcp is not None or self.a2a is not None


class AgreementTier(_Conf):
    """Agents asked together; their answers are accepted when ``min_agree`` of them agree."""

    agents: list[str] = Field(min_length=1)
    """Distinct agents (by name), each asked once: a tier of different models, not samples."""
    min_agree: int | None = Field(None, ge=1)
    """How many must give the same answer (default: a majority of the tier)."""
    mode: Literal["parallel", "sequential"] = "parallel"
    """``parallel`` asks every agent at once; ``sequential`` asks them one by one, in order,
    and stops as soon as ``min_agree`` agree or can no longer agree (cheaper, slower)."""

    @property
    def needed(self) -> int:
        return self.min_agree if self.min_agree is not None else len(self.agents) // 2 + 1

    @model_validator(mode="after")
    def _reachable(self) -> AgreementTier:
        if len(set(self.agents)) < len(self.agents):
            raise ValueError(f"a tier names an agent twice: {', '.join(self.agents)}")
        if self.needed > len(self.agents):
            raise ValueError(
                f"min_agree {self.needed} is more than the tier's {len(self.agents)} agent(s) "
                f"({', '.join(self.agents)})"
            )
        return self


class AgreementConfig(_Conf):
    """Cross-agent agreement for one capability (``routing.agreement.<capability>``).

    A step is sent to the agents of the first tier; their answers (``answer`` names the
    extractor of :mod:`rede.answers`) are compared, and the step is accepted when at least
    ``min_agree`` agree. Otherwise it escalates to the next tier (``on_disagreement:
    escalate``) or takes the most common answer at once (``majority``). At the last tier the
    most common answer over every vote cast wins; a tie goes to the higher tier's answer."""

    tiers: list[AgreementTier] = Field(min_length=1)
    answer: str = "text"
    on_disagreement: Literal["escalate", "majority"] = "escalate"

    @field_validator("answer")
    @classmethod
    def _known_extractor(cls, value: str) -> str:
        from rede.answers import extractor

        extractor(value)  # a ValueError naming the known extractors
        return value

    @model_validator(mode="after")
    def _distinct(self) -> AgreementConfig:
        names = [a for tier in self.tiers for a in tier.agents]
        again = sorted({a for a in names if names.count(a) > 1})
        if again:
            raise ValueError(f"agent(s) {', '.join(again)} appear in more than one tier")
        return self


class RoutingConfig(_Conf):
    strategy: Literal["cheapest", "cascade", "load", "auction"] = "cheapest"
    per_capability: dict[str, Literal["cheapest", "cascade", "load", "auction"]] = Field(
        default_factory=dict
    )
    escalate_below: float = Field(0.6, ge=0, le=1)
    """Cascade: a result with confidence below this (or below the step's required confidence,
    whichever is higher) is escalated to the next tier."""
    required_confidence: float = Field(0.0, ge=0, le=1)
    """Default quality a step needs (``cheapest``/``auction``) when its plan names none."""
    halflife: float = Field(50.0, gt=0)
    """Observed quality and token use decay: an observation counts half after this many
    newer observations on the same capability (of any agent)."""
    manager: str | None = Field(None, pattern=NAME)
    """Cascade: the agent escalated to after every tier (one larger model over a swarm)."""
    bid_timeout_s: float = Field(0.5, gt=0)
    """Auction: bids that arrive later are ignored; a silent agent cannot stall the award."""
    auction_wait_usd_per_s: float = Field(0.0001, ge=0)
    """Auction: what a second of expected queue wait is worth against a bid's price."""
    agreement: dict[str, AgreementConfig] = Field(default_factory=dict)
    """By capability: ask tiers of distinct agents and accept what enough of them agree on
    (cross-agent verification); see :class:`AgreementConfig`."""


class LimitsConfig(_Conf):
    max_steps: int = Field(40, ge=1)
    """Step executions in one run, planning, critiques, refinements and synthesis included."""
    max_plan_steps: int = Field(12, ge=1)
    max_refine_rounds: int = Field(2, ge=0)
    on_round_limit: Literal["accept", "fail"] = "accept"
    wall_time_s: float = Field(300, gt=0)
    max_cost_usd: float | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=1)
    network_max_cost_usd: float | None = Field(None, ge=0)
    """Cap on what all runs of this network together may spend (while it is running)."""
    network_max_tokens: int | None = Field(None, ge=1)
    max_runs: int | None = Field(None, ge=1)
    """Runs of this network at once in one process; the next waits ``admit_wait_s`` for
    one to end and is then refused with ``Busy`` (HTTP 429). None: no limit."""
    admit_wait_s: float = Field(0, ge=0)
    step_timeout_s: float = Field(60, gt=0)
    """How long an agent may work on a step, counted from when it starts the task."""
    slot_wait_s: float | None = Field(None, gt=0)
    """How long a step's task may wait for a busy agent's slot before the call counts as
    lost; None: as long as the run's deadline (``wall_time_s``) allows."""
    step_retries: int = Field(2, ge=0)
    plan_repairs: int = Field(2, ge=0)


class SpawnTemplate(_Conf):
    """Replica bounds for one agent of ``agents``, which serves as the template."""

    min_replicas: int = Field(1, ge=0, le=64)
    max_replicas: int = Field(4, ge=1, le=64)
    initial: int | None = Field(None, ge=0, le=64)
    """Replicas at start (default: the agent's ``replicas`` within the bounds). 0 leaves the
    agent dormant until load or a plan that needs its capability starts it."""

    @model_validator(mode="after")
    def _bounds(self) -> SpawnTemplate:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas {self.min_replicas} is above max_replicas {self.max_replicas}"
            )
        return self


class SpawnConfig(_Conf):
    """Dynamic spawning: replicas started and stopped by queue depth and waiting time."""

    templates: dict[str, SpawnTemplate] = Field(default_factory=dict)
    """By agent name: which agents may be scaled, and within which bounds."""
    on_missing: Literal["spawn", "error"] = "spawn"
    """A step whose capability no live agent serves: start a template that serves it, or
    fail naming the capability."""
    backlog_per_replica: float = Field(1.0, gt=0)
    """Scale up when tasks waiting beyond the replicas' concurrency exceed this per replica."""
    max_wait_s: float = Field(1.0, gt=0)
    """...or when the recent queue wait of an agent's calls exceeds this."""
    idle_s: float = Field(5.0, ge=0)
    """Scale down after the spare capacity of at least one replica lasted this long."""
    max_step: int = Field(8, ge=1)
    """Replicas started at once for one agent."""
    interval_s: float = Field(0.25, gt=0)
    """How often the spawner looks when nothing changes (it also wakes on every call)."""


class BusConfig(_Conf):
    url: str = "memory://"
    max_message_bytes: int = Field(1_000_000, gt=0)
    visibility_timeout_s: float = Field(30, gt=0)
    max_deliveries: int = Field(5, ge=1)
    maxlen: int = Field(10_000, ge=100)
    """Entries kept per topic stream (Redis trims with ``MAXLEN ~``); older ones are dropped."""
    dead_maxlen: int = Field(1_000, ge=10)
    """Entries kept in the dead-letter stream ``rede.dead`` (Redis), the newest."""
    signing_key_env: str | None = None
    """Name of an environment variable that holds the shared HMAC signing key."""
    keys: str | None = None
    """A directory with the keyring and this machine's key files (``rede keys init``): every
    envelope is signed by its sender's own key (relative to the YAML file)."""
    insecure: bool = False
    """Run a shared bus (Redis) unsigned: anyone who can write to it can forge messages.
    Without it, a network on Redis needs ``keys`` or ``signing_key_env``."""
    ephemeral_ttl_s: float = Field(3600, gt=0)
    """How long a reply or inbox stream outlives its last live subscriber when no one deletes
    it (a killed agent's inbox): live subscribers renew it, publishes never do."""
    reconnect_timeout_s: float = Field(30, gt=0)
    """Redis: how long calls keep retrying after the server was lost, before they fail."""
    first_connect_timeout_s: float = Field(3, gt=0)
    """Redis: how long before the first connection is given up (a wrong address fails fast)."""


class HumanConfig(_Conf):
    """Where a run waits for a person (see :mod:`rede.orchestration.human`)."""

    approve_plan: bool = False
    """A person approves (or rejects) every plan before any step runs."""
    approve: list[str] = Field(default_factory=list)
    """Capabilities whose step outputs a person approves (a plan step's ``approve: true``
    asks for one step)."""
    timeout_s: float | None = Field(None, gt=0)
    """How long a run waits for a person; None: until an answer comes (the run is paused in
    the ledger and costs nothing while it waits)."""
    on_timeout: Literal["fail", "accept", "default"] = "fail"
    """When nobody answered in time: fail the step, accept what waits for approval, or
    accept it and answer a question with ``default``."""
    default: str = ""
    """The answer to an agent's question for a person when ``on_timeout: default``."""
    poll_s: float = Field(0.5, gt=0)
    """How often a waiting run looks in the ledger for an answer given elsewhere."""


class DurableConfig(_Conf):
    """Runs checkpointed in the ledger so that another process can resume them."""

    lease_s: float = Field(15.0, gt=0)
    """An orchestrator renews its hold on each live run within this; a run whose holder
    stopped renewing (its process died) is an orphan another orchestrator may resume."""
    resume_orphans: bool = True
    """``rede serve`` (and a Network started with ``resume_orphans=True``) resumes orphaned
    runs of this network from its ledger, at start and every ``lease_s``."""


STEP_POLICIES = ("replan", "continue", "fail")
StepPolicy = Literal["replan", "continue", "fail"]


class StepFailureConfig(_Conf):
    """What a run does when a plan step fails on every agent that could take it
    (``on_step_failure:``; a plan step's ``on_failure`` or ``required: true`` overrides it).

    ``replan``: the planner is told what failed and why and repairs the plan around it; the
    finished steps are kept, not run or billed again. After ``max_replans`` repairs (or when
    no valid repaired plan comes) a failure is handled as ``continue``. ``continue``: the
    dependants and the synthesis get the failure as context and the answer is marked partial.
    ``fail``: the run fails (a required step always does). A bare policy name is accepted:
    ``on_step_failure: continue``."""

    policy: StepPolicy = "replan"
    max_replans: int = Field(1, ge=0, le=5)
    """Repaired plans per run; past them a failure is handled as ``continue``."""
    per_capability: dict[str, StepPolicy] = Field(default_factory=dict)
    """By capability: its steps' policy, instead of ``policy``."""
    required: list[str] = Field(default_factory=list)
    """Capabilities whose steps are required: their failure fails the run."""
