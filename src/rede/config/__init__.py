"""The network description: YAML loaded once into validated pydantic models.

name: research-team
models:
  small: {spec: "sim:7b", seed: 1}
  local: {spec: "openai:llama3.1:8b", base_url: "http://127.0.0.1:11434/v1",
          price: {input_per_1k: 0.0, output_per_1k: 0.0}}
agents:
  - {name: planner, capabilities: [plan], model: small}
  - {name: calculator, tool: arithmetic, capabilities: [arithmetic]}
routing: {strategy: cheapest}
limits: {max_steps: 20, max_refine_rounds: 2, wall_time_s: 120, max_cost_usd: 0.5}

The sections are in :mod:`rede.config.parts`, the whole network in :mod:`rede.config.network`;
every name is importable from here.
"""

from rede.config._base import (
    META_CAPABILITIES,
    NAME,
    WELL_KNOWN,
    misspelt,
    read_yaml,
    validate_mapping,
)
from rede.config.network import NetworkConfig
from rede.config.parts import (
    CONFIDENCE_METHODS,
    STEP_POLICIES,
    A2aConfig,
    AgentConfig,
    AgreementConfig,
    AgreementTier,
    BusConfig,
    ConfidenceConfig,
    DurableConfig,
    HumanConfig,
    LimitsConfig,
    McpConfig,
    ModelConfig,
    RoutingConfig,
    SpawnConfig,
    SpawnTemplate,
    StepFailureConfig,
    StepPolicy,
)

__all__ = [
    "CONFIDENCE_METHODS",
    "META_CAPABILITIES",
    "NAME",
    "STEP_POLICIES",
    "WELL_KNOWN",
    "A2aConfig",
    "AgentConfig",
    "AgreementConfig",
    "AgreementTier",
    "BusConfig",
    "ConfidenceConfig",
    "DurableConfig",
    "HumanConfig",
    "LimitsConfig",
    "McpConfig",
    "ModelConfig",
    "NetworkConfig",
    "RoutingConfig",
    "SpawnConfig",
    "SpawnTemplate",
    "StepFailureConfig",
    "StepPolicy",
    "misspelt",
    "read_yaml",
    "validate_mapping",
]
