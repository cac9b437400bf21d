"""Rede: networks of small LLM agents cooperating over a message bus.

The public surface; everything not re-exported here lives in its module (``rede.bus``,
``rede.models``, ``rede.protocol.messages``, ``rede.orchestration.ledger``, ...) and may
change between versions::

    from rede import Network, tool

    @tool
    def add(a: float, b: float) -> float:
        return a + b

    net = Network.from_yaml("team.yaml", tools=[add])
    result = net.ask_sync("...")            # or: async with net: await net.ask("...")
    print(result.answer, result.usage.cost_usd)
"""

from rede.agents.tools import Tool, tool
from rede.errors import (
    BusError,
    ConfigError,
    ModelError,
    PlanError,
    RedeError,
    RunLimitExceeded,
    StepFailed,
    UnknownCapability,
    UnknownStep,
)
from rede.models import ChatModel, ModelRequest, ModelResponse, ScriptedModel
from rede.network import Network, ask
from rede.orchestration.plan import Plan, Step
from rede.orchestration.run import RunResult
from rede.protocol.messages import Event, Usage

__version__ = "0.1.0"

__all__ = [
    "BusError",
    "ChatModel",
    "ConfigError",
    "Event",
    "ModelError",
    "ModelRequest",
    "ModelResponse",
    "Network",
    "Plan",
    "PlanError",
    "RedeError",
    "RunLimitExceeded",
    "RunResult",
    "ScriptedModel",
    "Step",
    "StepFailed",
    "Tool",
    "UnknownCapability",
    "UnknownStep",
    "Usage",
    "__version__",
    "ask",
    "tool",
]
