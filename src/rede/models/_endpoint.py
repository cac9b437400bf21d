"""Where an OpenAI-compatible server is: its base URL, checked, and the loopback guard.

With ``REDE_LOOPBACK_ONLY=1`` in the environment (the test suite sets it) a model refuses any
base URL that is not loopback, so no test reaches a real API by accident."""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlsplit

from rede.errors import ConfigError

DEFAULT_BASE_URL = "http://127.0.0.1:11434/v1"
"""Ollama's OpenAI-compatible endpoint on this machine."""
LOOPBACK_ENV = "REDE_LOOPBACK_ONLY"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def is_loopback(url: str) -> bool:
    """Whether a URL's host is this machine (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    host = (urlsplit(url).hostname or "").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _loopback_only() -> bool:
    return os.environ.get(LOOPBACK_ENV, "").strip().lower() not in ("", "0", "false", "no")


def checked_url(model: str, base_url: str | None) -> str:
    """The server's base URL: given, else ``OPENAI_BASE_URL``, else OpenAI's; an http(s) URL
    with a host, and loopback when ``REDE_LOOPBACK_ONLY`` is set."""
    url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"base URL {url!r} for model {model!r} is not an http(s) URL with a host; "
            f"expected e.g. {DEFAULT_BASE_URL!r}"
        )
    if _loopback_only() and not is_loopback(url):
        raise ConfigError(
            f"base URL {url!r} for model {model!r} is not loopback, and "
            f"{LOOPBACK_ENV} is set: only 127.0.0.1, localhost or ::1 may be reached "
            f"(unset {LOOPBACK_ENV} to allow other hosts)"
        )
    return url
