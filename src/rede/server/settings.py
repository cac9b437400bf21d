"""What ``rede serve`` is told: keys, limits, CORS and what happens to a run whose client
left. One pydantic model, built once by the CLI (or by a test) and passed to the app."""

from __future__ import annotations

import ipaddress
import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rede.errors import ConfigError


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def keys_from_env(value: str | None = None) -> list[str]:
    """``REDE_API_KEYS``: keys separated by commas or whitespace."""
    raw = os.environ.get("REDE_API_KEYS", "") if value is None else value
    return [k for k in raw.replace(",", " ").split() if k]


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_keys: list[str] = Field(default_factory=list)
    """Bearer keys accepted on the API. Empty: no key needed (allowed on loopback only)."""
    cors_origins: list[str] = Field(default_factory=list)
    """Origins allowed by CORS; empty turns CORS off (browsers refuse cross-origin calls)."""
    max_body_bytes: int = Field(1_048_576, gt=0)
    max_concurrent_runs: int = Field(256, gt=0)
    on_disconnect: Literal["cancel", "finish"] = "cancel"
    """A streaming or waiting client that goes away: cancel its run, or let it finish."""
    shutdown_timeout_s: float = Field(30.0, ge=0)
    """On SIGINT/SIGTERM, running runs get this long to finish; then they are cancelled."""
    retry_after_s: int = Field(1, ge=1)
    auth_max_failures: int = Field(10, ge=1)
    """Failed authentications a client (by address) may make within ``auth_window_s``;
    past that it is answered 429 with Retry-After until the window lets it try again."""
    auth_window_s: float = Field(60.0, gt=0)
    keep_runs: int = Field(1000, gt=0)
    """Finished runs kept in memory with their events; older ones are read from the ledger."""
    public_url: str | None = None
    """The URL clients reach this server at (the A2A card's interface URL); default from
    host and port."""

    def check(self) -> None:
        """Refuse an open server on a non-loopback address."""
        if not self.api_keys and not is_loopback(self.host):
            raise ConfigError(
                f"serving on {self.host} needs an API key: pass --api-key KEY or set "
                "REDE_API_KEYS (a key is optional only on a loopback address)"
            )

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}"
