"""Rede: networks of small LLM agents cooperating over a message bus.

The public surface; everything not re-exported here may change between versions.
"""

from rede.agents.bidding import make_bid
from rede.agents.confidence import AgreementSpecialist, answer_key
from rede.agents.specialists import LLMSpecialist, Specialist, SpecialistSpec, ToolSpecialist
from rede.bus import Bus, BusOptions, MemoryBus, bus_from_url
from rede.config import (
    ConfidenceConfig,
    LimitsConfig,
    NetworkConfig,
    RoutingConfig,
    SpawnConfig,
    SpawnTemplate,
)
from rede.errors import (
    BusError,
    ClosedBusError,
    ConfigError,
    MalformedMessage,
    MessageTooLarge,
    ModelError,
    ModelResponseError,
    ModelUnavailable,
    PlanError,
    ProtocolError,
    RedeError,
    RunLimitExceeded,
    SignatureError,
    StepFailed,
    UnknownCapability,
)
from rede.models import ChatModel, ModelRequest, ModelResponse, Price, ScriptedModel
from rede.network import Network, ask
from rede.orchestration.ledger import Ledger, SQLiteLedger
from rede.orchestration.plan import Plan, Step
from rede.orchestration.run import RunResult, StepRecord
from rede.protocol.messages import (
    AgentCard,
    Bid,
    BidRequest,
    ContextItem,
    Critique,
    Envelope,
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
from rede.routing.budget import BudgetCap
from rede.routing.router import Route, Router, RouteRequest
from rede.runtime.agent import AgentRunner
from rede.runtime.registry import Registry
from rede.scaling.load import BusLoad, LoadView, RouterLoad
from rede.scaling.spawner import InProcessBackend, SpawnBackend, Spawner
from rede.scaling.supervisor import ProcessBackend

__version__ = "0.1.0"

__all__ = [
    "AgentCard",
    "AgentRunner",
    "AgreementSpecialist",
    "Bid",
    "BidRequest",
    "BudgetCap",
    "Bus",
    "BusError",
    "BusLoad",
    "BusOptions",
    "ChatModel",
    "ClosedBusError",
    "ConfidenceConfig",
    "ConfigError",
    "ContextItem",
    "Critique",
    "Envelope",
    "Event",
    "Heartbeat",
    "InProcessBackend",
    "InputReply",
    "InputRequest",
    "LLMSpecialist",
    "Ledger",
    "LimitsConfig",
    "LoadView",
    "MalformedMessage",
    "MemoryBus",
    "MessageTooLarge",
    "ModelError",
    "ModelRequest",
    "ModelResponse",
    "ModelResponseError",
    "ModelUnavailable",
    "Network",
    "NetworkConfig",
    "Plan",
    "PlanError",
    "Price",
    "ProcessBackend",
    "ProtocolError",
    "RedeError",
    "Registry",
    "Result",
    "Route",
    "RouteRequest",
    "Router",
    "RouterLoad",
    "RoutingConfig",
    "RunLimitExceeded",
    "RunResult",
    "SQLiteLedger",
    "ScriptedModel",
    "SignatureError",
    "SpawnBackend",
    "SpawnConfig",
    "SpawnTemplate",
    "Spawner",
    "Specialist",
    "SpecialistSpec",
    "Step",
    "StepFailed",
    "StepRecord",
    "Task",
    "ToolSpecialist",
    "Topic",
    "UnknownCapability",
    "Usage",
    "__version__",
    "answer_key",
    "ask",
    "bus_from_url",
    "make_bid",
    "protocol_schema",
]
