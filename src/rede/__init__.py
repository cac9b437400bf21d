"""Rede: networks of small LLM agents cooperating over a message bus.

The public surface; everything not re-exported here may change between versions.
"""

from rede.agent import AgentRunner
from rede.auction import make_bid
from rede.budget import BudgetCap
from rede.bus import Bus, BusOptions, MemoryBus, bus_from_url
from rede.confidence import AgreementSpecialist, answer_key
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
from rede.ledger import Ledger, SQLiteLedger
from rede.load import BusLoad, LoadView, RouterLoad
from rede.messages import (
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
from rede.models import ChatModel, ModelRequest, ModelResponse, Price, ScriptedModel
from rede.network import Network, ask
from rede.plan import Plan, Step
from rede.registry import Registry
from rede.routing import Route, Router, RouteRequest
from rede.run import RunResult, StepRecord
from rede.spawner import InProcessBackend, SpawnBackend, Spawner
from rede.specialists import LLMSpecialist, Specialist, SpecialistSpec, ToolSpecialist
from rede.supervisor import ProcessBackend
from rede.topics import Topic

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
