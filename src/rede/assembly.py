"""How a network description becomes its parts: models, tools, and each agent's spec.

:class:`Assembly` is what :class:`~rede.network.Network` builds from; it reads the YAML's
sections once, checks what it can before anything runs (tools against agents, prompt
templates' variables) and builds models on first use.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from rede.agents.a2a_remote import A2aRemote, a2a_spec, open_a2a
from rede.agents.confidence import llm_specialist
from rede.agents.mcp import McpServer, mcp_spec, open_mcp
from rede.agents.specialists import SpecialistSpec, check_template
from rede.agents.tools import Tool, ToolFn, ToolSpecialist, resolve_tool
from rede.bus import BusOptions
from rede.config import AgentConfig, ModelConfig, NetworkConfig
from rede.errors import ConfigError
from rede.models import ChatModel, model_from_spec
from rede.models._engine import Engines
from rede.models._structured import DialectMemory
from rede.models.sim import SimModel
from rede.protocol.codec import describe_validation_error

if TYPE_CHECKING:
    from rede.protocol.identity import KeySet

log = logging.getLogger("rede.network")

KEYS_ENV = "REDE_KEYS"
"""The keys directory when the YAML names none (``bus.keys`` wins): how ``rede up`` hands the
keyring it made for its embedded bus to its agent processes."""


class Assembly:
    """Models, tools and agent specs of one network description."""

    def __init__(
        self,
        config: NetworkConfig,
        *,
        models: dict[str, ChatModel] | None = None,
        tools: Iterable[Tool | ToolFn] = (),
        base_url: str | None = None,
        model_override: str | None = None,
        api_key: str | None = None,
        time_scale: float | None = None,
    ) -> None:
        self.config = config
        self.models: dict[str, ChatModel] = dict(models or {})
        self.base_url = base_url
        self.model_override = model_override
        self.api_key = api_key
        self.time_scale = time_scale
        self.dialects = DialectMemory()
        self.engines = Engines()
        """The llama.cpp models loaded in this process, shared by the models that name them."""
        self.tools = self._add_tools(tools)
        self.remote: dict[str, McpServer | A2aRemote] = {}
        """MCP servers (and remote A2A agents) by agent name, once :meth:`open_remote` ran."""
        for agent in config.agents:  # a template's mistakes show now, not in the first run
            self.prompts(agent)

    def _add_tools(self, given: Iterable[Tool | ToolFn]) -> dict[str, Tool]:
        tools: dict[str, Tool] = {}
        for fn in given:
            t = fn if isinstance(fn, Tool) else Tool(fn)
            if t.name in tools:
                raise ConfigError(f"two tools are named {t.name!r}; give one another name")
            tools[t.name] = t
        named = {a.tool for a in self.config.agents if a.tool is not None}
        agents = {a.name for a in self.config.agents}
        for t in tools.values():
            if t.name in named:
                continue
            if t.name in agents:
                raise ConfigError(
                    f"tool {t.name!r} would get an agent of its own, but the network already "
                    f"has an agent {t.name!r}; name the tool in that agent's 'tool:' or rename it"
                )
            try:
                agent = AgentConfig(name=t.name, capabilities=[t.capability], tool=t.name)
            except ValidationError as exc:
                raise ConfigError(f"tool {t.name!r}: {describe_validation_error(exc)}") from None
            self.config.agents.append(agent)
        return tools

    def bus_options(self, url: str | None = None) -> BusOptions:
        """The bus's options for ``url`` (default: the YAML's). A shared bus (Redis) signs
        every envelope unless the YAML says ``bus: {insecure: true}`` (then says so loudly)."""
        b = self.config.bus
        key = None
        if b.signing_key_env:
            key = os.environ.get(b.signing_key_env)
            if not key:
                raise ConfigError(
                    f"bus.signing_key_env names {b.signing_key_env!r}, "
                    "but that environment variable is empty"
                )
        keys = self._keys() if b.keys or os.environ.get(KEYS_ENV) else None
        _check_secure(url or b.url, signed=bool(key or keys), insecure=b.insecure)
        return BusOptions(
            max_message_bytes=b.max_message_bytes,
            visibility_timeout_s=b.visibility_timeout_s,
            max_deliveries=b.max_deliveries,
            maxlen=b.maxlen,
            dead_maxlen=b.dead_maxlen,
            signing_key=key,
            keys=keys,
            ephemeral_ttl_s=b.ephemeral_ttl_s,
            reconnect_timeout_s=b.reconnect_timeout_s,
            first_connect_timeout_s=b.first_connect_timeout_s,
        )

    def _keys(self) -> KeySet:
        from rede.protocol.identity import KeySet

        where = self.config.bus.keys or os.environ.get(KEYS_ENV, "")
        path = Path(os.path.expandvars(where)).expanduser()
        if not path.is_absolute() and self.config.base_dir is not None:
            path = self.config.base_dir / path  # relative to the network's YAML file
        return KeySet.load(path)

    def model(self, name: str) -> ChatModel:
        if name in self.models:
            return self.models[name]
        conf = self.config.models[name]
        self.models[name] = built = self._build_model(name, conf)
        return built

    def _build_model(self, name: str, conf: ModelConfig) -> ChatModel:
        backend = conf.spec.partition(":")[0]
        if self.base_url is not None or self.model_override is not None:
            if backend != "replay":
                if self.model_override is None and backend != "openai":
                    raise ConfigError(
                        f"--base-url points model {name!r} ({conf.spec}) at a server, but no "
                        "model name was given: add --model NAME (the server's model id)"
                    )
                model_name = self.model_override or conf.spec.partition(":")[2]
                return model_from_spec(
                    f"openai:{model_name}",
                    base_url=self.base_url,
                    api_key=self.api_key or conf.api_key,
                    price=conf.price,
                    dialects=self.dialects,
                    **self._openai_options(conf, backend),
                )
        options: dict[str, Any] = {}
        if backend == "replay":
            path = Path(os.path.expandvars(conf.spec.partition(":")[2])).expanduser()
            if not path.is_absolute() and self.config.base_dir is not None:
                path = self.config.base_dir / path  # relative to the network's YAML file
            return model_from_spec(f"replay:{path}", price=conf.price)
        if backend == "sim":
            scale = self.time_scale if self.time_scale is not None else conf.time_scale
            options = {"seed": conf.seed, "overrides": conf.sim, "name": name}
            if scale is not None:
                options["time_scale"] = scale
        elif backend == "openai":
            options = {
                k: v
                for k, v in {
                    "base_url": conf.base_url,
                    "api_key": self.api_key or conf.api_key,
                    "price": conf.price,
                    "timeout_s": conf.timeout_s,
                    "total_timeout_s": conf.total_timeout_s,
                }.items()
                if v is not None
            }
            options.update(self._openai_options(conf, backend), dialects=self.dialects)
        elif backend == "llamacpp":
            options = self._llamacpp_options(conf)
        return model_from_spec(conf.spec, **options)

    def _llamacpp_options(self, conf: ModelConfig) -> dict[str, Any]:
        fields = ("slots", "threads", "n_ctx", "max_tokens", "cache_prompt", "price")
        options = {k: getattr(conf, k) for k in fields if getattr(conf, k) is not None}
        if "seed" in conf.model_fields_set:
            options["seed"] = conf.seed
        return {**options, "engines": self.engines}

    @staticmethod
    def _openai_options(conf: ModelConfig, backend: str) -> dict[str, Any]:
        """Structured output and seed of a model served over the OpenAI protocol. A sim
        model's seed seeds the simulator, not a server: it is sent only from openai models
        whose YAML sets it."""
        options: dict[str, Any] = {}
        if conf.structured is not None:
            options["structured"] = conf.structured
        if conf.json_mode is not None:
            options["json_mode"] = conf.json_mode
        if backend == "openai" and "seed" in conf.model_fields_set:
            options["seed"] = conf.seed
        if conf.max_tokens is not None:
            options["max_tokens"] = conf.max_tokens
        return options

    async def open_remote(self, only: set[str] | None = None) -> None:
        """Start (or connect to) the MCP servers and remote A2A agents of the agents served
        here (``only``: these names), each giving its agent its capabilities."""
        for agent in self.config.agents:
            if not agent.remote or agent.name in self.remote:
                continue
            if only is not None and agent.name not in only:
                continue
            if agent.mcp is not None:
                self.remote[agent.name] = await open_mcp(agent, self.config.base_dir)
            else:
                self.remote[agent.name] = await open_a2a(agent)

    async def probe_remote(self) -> dict[str, dict[str, str]]:
        """Start every remote agent, note what it serves (agent -> tool -> capability), stop
        them again: what ``rede validate`` lists."""
        try:
            await self.open_remote()
            return {
                name: dict(sorted((t.name, cap) for cap, t in server.tools.items()))
                for name, server in self.remote.items()
            }
        finally:
            await self.aclose_remote()

    async def aclose_remote(self) -> None:
        """Stop every MCP server started here and close remote connections."""
        while self.remote:
            _, server = self.remote.popitem()
            await server.aclose()

    def spec(self, agent: AgentConfig) -> SpecialistSpec:
        if agent.remote:
            server = self.remote.get(agent.name)
            if server is None:
                raise ConfigError(
                    f"agent {agent.name!r} is served by a remote server that is not open: "
                    "start the network first (Network.start, or Assembly.open_remote)"
                )
            if isinstance(server, A2aRemote):
                return a2a_spec(agent, server)
            return mcp_spec(agent, server)
        if agent.tool is not None:
            return SpecialistSpec(
                name=agent.name,
                capabilities=agent.capabilities,
                specialist=ToolSpecialist(agent.tool, resolve_tool(agent.tool, self.tools)),
                quality=agent.quality if agent.quality is not None else 0.99,
                tier=agent.tier,
                concurrency=agent.concurrency,
            )
        assert agent.model is not None
        model = self.model(agent.model)
        quality = agent.quality
        if quality is None:
            quality = (
                (
                    sum(model.profile.quality_for(c) for c in agent.capabilities)
                    / len(agent.capabilities)
                )
                if isinstance(model, SimModel)
                else 0.5
            )
        prompts = self.prompts(agent)
        window = agent.context_window or (
            model.profile.context_window if isinstance(model, SimModel) else 8192
        )
        return SpecialistSpec(
            name=agent.name,
            capabilities=agent.capabilities,
            specialist=llm_specialist(model, prompts, agent.confidence),
            price_in_per_1k=model.price.input_per_1k,
            price_out_per_1k=model.price.output_per_1k,
            quality=quality,
            tier=agent.tier,
            context_window=window,
            concurrency=agent.concurrency,
        )

    def prompts(self, agent: AgentConfig) -> dict[str, str]:
        """An agent's own prompt templates by capability, each checked for variables that
        would never be filled in."""
        prompts = {cap: self._prompt_text(text) for cap, text in agent.prompts.items()}
        for cap, text in prompts.items():
            check_template(text, f"the {cap!r} prompt of agent {agent.name!r}")
        return prompts

    def _prompt_text(self, value: str) -> str:
        if "\n" not in value and value.endswith((".txt", ".md")):
            path = Path(value)
            if not path.is_absolute() and self.config.base_dir is not None:
                path = self.config.base_dir / path
            try:
                return path.read_text()
            except OSError as exc:
                raise ConfigError(f"cannot read prompt file {path}: {exc.strerror}") from exc
        return value


__all__ = ["Assembly"]


def _check_secure(url: str, *, signed: bool, insecure: bool) -> None:
    if signed or url.startswith("memory:") or not url:
        return
    from rede.bus.redis import redact_url

    if not insecure:
        raise ConfigError(
            f"the bus at {redact_url(url)} is shared, so it signs every envelope: make keys "
            "with `rede keys init KEYS_DIR --network NET.yaml` and set `bus: {keys: KEYS_DIR}`, "
            "or set `bus: {insecure: true}` to run unsigned"
        )
    log.warning(
        "INSECURE BUS: envelopes on %s are not signed (bus.insecure: true); anyone who can "
        "write to it can register agents, send tasks and forge results",
        redact_url(url),
    )
