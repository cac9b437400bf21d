"""``rede up`` on the embedded bus it starts signs it too: a keyring made for that run, in a
private temporary directory its agent processes get through ``REDE_KEYS``, removed after."""

from __future__ import annotations

import os
import stat

import pytest

from rede.assembly import KEYS_ENV
from rede.cli.keys import throwaway_keys
from rede.config import NetworkConfig
from rede.protocol.identity import KEYRING, Keyring

TEAM = {
    "models": {"m": {"spec": "sim:7b"}},
    "agents": [
        {"name": "writer", "capabilities": ["write"], "model": "m"},
        {"name": "critic", "capabilities": ["critique"], "model": "m"},
    ],
}


def test_a_throwaway_keyring_has_every_identity_and_goes_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(KEYS_ENV, raising=False)
    with throwaway_keys(NetworkConfig.model_validate(TEAM)) as directory:
        assert directory is not None
        assert os.environ[KEYS_ENV] == str(directory)
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700  # this user's only
        ring = Keyring(directory / KEYRING)
        owners = {ring.get(kid).principal for kid in ring.kids()}  # type: ignore[union-attr]
        assert owners == {"orchestrator", "writer", "critic"}
    assert not directory.exists() and KEYS_ENV not in os.environ


@pytest.mark.parametrize("bus", [{"insecure": True}, {"keys": "keys/"}])
def test_no_throwaway_keyring_when_the_network_says_how_to_sign(
    bus: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEYS_ENV, raising=False)
    with throwaway_keys(NetworkConfig.model_validate({**TEAM, "bus": bus})) as directory:
        assert directory is None
