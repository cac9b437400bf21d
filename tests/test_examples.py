"""The README's network YAML is a file that ships and runs: ``examples/team.yaml`` holds it
word for word, and every example network loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from rede.config import NetworkConfig
from rede.network import Network

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def readme_block(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"{heading}\n\n```yaml\n") + len(f"{heading}\n\n```yaml\n")
    return text[start : text.index("```\n", start)]


def test_the_readme_network_is_examples_team_yaml() -> None:
    shipped = (EXAMPLES / "team.yaml").read_text().split("\n", 1)[1]  # less its first comment
    assert readme_block("## A network in YAML") == shipped


async def test_examples_team_yaml_runs_as_it_is() -> None:
    net = Network.from_yaml(EXAMPLES / "team.yaml", time_scale=0.0, ledger=None)
    async with net:
        result = await net.ask("Compare Redis Streams and Kafka for a small team")
    assert result.status == "ok", result.error
    assert result.simulated and result.answer


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_network_loads(path: Path) -> None:
    assert NetworkConfig.from_yaml(path).agents
