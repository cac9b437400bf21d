"""Per-agent identities: an Ed25519 key pair for each agent and orchestrator.

A *keyring* (``keyring.json``, public keys only) names every identity a network trusts:
key id (``kid``, ``<principal>.<n>``), principal (an agent's name, or ``orchestrator``), role
(``agent`` or ``orchestrator``) and public key. A *key file* (``<kid>.key``, mode 0600)
holds one identity's private key; each machine gets only the key files of what it runs.
``rede keys`` makes both (:func:`make_keys`, :func:`rotate`, :func:`retire`).

An envelope signed by an identity carries its ``kid`` and an Ed25519 signature over the
envelope without ``sig``. A verifier accepts it only when

- the ``kid`` is in the keyring and the signature verifies with its public key;
- the key's principal owns the envelope's ``sender``: the sender is the principal itself or
  one of its instances (``<principal>-<16 hex digits>``, as :func:`new_id` makes them), so
  a compromised agent cannot speak for another; the bus's own notices (sender ``bus``:
  dead letters, "gave up on this task") may be signed by any key, and carry only errors;
- an agent's key sends no ``task``, ``input_reply`` or ``bid_request`` (an orchestrator's
  work), and a heartbeat's card is its sender's (``card.id``) under its principal's name
  (``card.name``), so no agent registers as another.

Rotation without downtime: :func:`rotate` adds a second key for a principal (both are
valid); a verifier reloads the keyring file when it changes (looked at no more than once a
second), so the new key is trusted everywhere without a restart; replicas restarted one at
a time with the new key file sign with the newest key they hold; :func:`retire` then drops
the old key from the keyring.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from rede.errors import ConfigError, MissingExtra, SignatureError

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )
except ImportError:  # the redis extra brings it, with the bus that needs it
    raise MissingExtra(
        "per-agent signing keys (bus.keys, rede keys)", "redis", "cryptography"
    ) from None

from rede.protocol.messages import Envelope, Heartbeat, owns

log = logging.getLogger("rede.keys")

KEYRING = "keyring.json"
ROLES = ("agent", "orchestrator")
AGENT_MAY_NOT_SEND = frozenset({"task", "input_reply", "bid_request"})
_NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class PublicKey:
    kid: str
    principal: str
    role: str
    key: Ed25519PublicKey


@dataclass(frozen=True)
class Identity:
    """One principal's private key: what a process signs its envelopes with."""

    kid: str
    principal: str
    role: str
    key: Ed25519PrivateKey

    def sign(self, body: bytes) -> str:
        return _b64(self.key.sign(body))


class Keyring:
    """The public keys a network trusts, from ``keyring.json``; reloaded when it changes."""

    def __init__(self, path: Path, *, recheck_s: float = 1.0) -> None:
        self.path = path
        self.recheck_s = recheck_s
        self._keys: dict[str, PublicKey] = {}
        self._stamp: float | None = None
        self._checked = 0.0
        self.reload()

    def reload(self) -> None:
        try:
            stamp = self.path.stat().st_mtime_ns
            doc = json.loads(self.path.read_text())
            keys = {k["kid"]: _public(k) for k in doc["keys"]}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"cannot read the keyring {self.path}: {exc}") from None
        self._keys, self._stamp = keys, stamp
        self._checked = time.monotonic()

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.recheck_s:
            return
        self._checked = now
        try:
            changed = self.path.stat().st_mtime_ns != self._stamp
        except OSError:
            return  # being replaced: keep what we have
        if changed:
            try:
                self.reload()
            except ConfigError as exc:  # a half-copied file: keep the keys we have, look again
                log.warning("keeping the keyring loaded before: %s", exc)
                self._stamp = None

    def get(self, kid: str) -> PublicKey | None:
        self._maybe_reload()
        return self._keys.get(kid)

    def kids(self) -> list[str]:
        return sorted(self._keys)


def _public(entry: dict[str, str]) -> PublicKey:
    return PublicKey(
        entry["kid"],
        entry["principal"],
        entry["role"],
        Ed25519PublicKey.from_public_bytes(_unb64(entry["public"])),
    )


class KeySet:
    """A keyring and the identities this process holds: signs as the sender's principal and
    verifies every envelope against the keyring (see the module)."""

    def __init__(self, keyring: Keyring, identities: list[Identity]) -> None:
        self.keyring = keyring
        self.identities = sorted(identities, key=lambda i: _version(i.kid), reverse=True)
        self._by_sender: dict[str, Identity] = {}

    @classmethod
    def load(cls, directory: str | Path) -> KeySet:
        """The keyring in ``directory`` and every key file there."""
        d = Path(directory)
        if not (d / KEYRING).is_file():
            raise ConfigError(
                f"no {KEYRING} in {d}: make one with `rede keys init {d} --network NET.yaml`"
            )
        return cls(Keyring(d / KEYRING), [read_identity(p) for p in sorted(d.glob("*.key"))])

    def holds(self, sender: str) -> bool:
        """Whether this process holds a key that owns ``sender``."""
        return any(owns(i.principal, sender) for i in self.identities)

    def signer(self, sender: str) -> Identity:
        """The newest identity that owns ``sender`` (any, for the bus's own notices)."""
        found = self._by_sender.get(sender)
        if found is None:
            found = next((i for i in self.identities if owns(i.principal, sender)), None)
            if found is None and sender == "bus" and self.identities:
                found = self.identities[0]
            if found is None:
                held = ", ".join(i.kid for i in self.identities) or "none"
                raise SignatureError(
                    f"this process holds no key for sender {sender!r} (keys held: {held}); "
                    "copy its key file into the bus's keys directory"
                )
            self._by_sender[sender] = found
        return found

    def check(self, envelope: Envelope, body: bytes) -> None:
        """Raise :class:`SignatureError` unless the envelope passes every rule of the module."""
        who = f"envelope {envelope.id!r} from {envelope.sender!r}"
        if not envelope.sig or not envelope.kid:
            raise SignatureError(f"unsigned {who} rejected: this bus requires a signature")
        key = self.keyring.get(envelope.kid)
        if key is None:
            raise SignatureError(f"{who} rejected: key {envelope.kid!r} is not in the keyring")
        try:
            key.key.verify(_unb64(envelope.sig), body)
        except (InvalidSignature, ValueError):
            raise SignatureError(
                f"forged or corrupted {who} rejected: signature does not match key {key.kid!r}"
            ) from None
        _check_claims(envelope, key, who)


def _check_claims(envelope: Envelope, key: PublicKey, who: str) -> None:
    kind = envelope.payload.kind
    if envelope.sender == "bus":
        if kind != "error":
            raise SignatureError(f"{who} rejected: the bus sends only error notices")
    elif not owns(key.principal, envelope.sender):
        raise SignatureError(
            f"{who} rejected: key {key.kid!r} belongs to {key.principal!r}, not to the sender"
        )
    if key.role == "agent" and kind in AGENT_MAY_NOT_SEND:
        raise SignatureError(f"{who} rejected: an agent's key may not send a {kind!r}")
    payload = envelope.payload
    if isinstance(payload, Heartbeat) and (
        payload.card.id != envelope.sender or payload.card.name != key.principal
    ):
        raise SignatureError(
            f"{who} rejected: a heartbeat must carry its sender's own card, named {key.principal!r}"
        )


def _version(kid: str) -> int:
    tail = kid.rpartition(".")[2]
    return int(tail) if tail.isdigit() else 0


# --------------------------------------------------------------------------- files


def read_identity(path: Path) -> Identity:
    try:
        doc = json.loads(path.read_text())
        raw = _unb64(doc["private"])
        return Identity(
            doc["kid"], doc["principal"], doc["role"], Ed25519PrivateKey.from_private_bytes(raw)
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read the key file {path}: {exc}") from None


def _write_private(path: Path, doc: dict[str, str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(doc, out, indent=2)


def _load_doc(directory: Path) -> dict[str, list[dict[str, str]]]:
    path = directory / KEYRING
    if not path.is_file():
        return {"keys": []}
    doc: dict[str, list[dict[str, str]]] = json.loads(path.read_text())
    return doc


def _save_doc(directory: Path, doc: dict[str, list[dict[str, str]]]) -> None:
    """Write the keyring whole, then move it into place: a reader never sees half a file."""
    tmp = directory / f".{KEYRING}.tmp"
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(directory / KEYRING)


def new_key(directory: str | Path, principal: str, role: str) -> str:
    """Make a key pair for ``principal``: its next ``kid``, a key file and a keyring entry."""
    if not _NAME.fullmatch(principal):
        raise ConfigError(f"invalid principal {principal!r}: use letters, digits, '_' and '-'")
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    doc = _load_doc(d)
    mine = [k for k in doc["keys"] if k["principal"] == principal]
    if mine and mine[0]["role"] != role:
        raise ConfigError(f"{principal!r} already has role {mine[0]['role']!r}, not {role!r}")
    kid = f"{principal}.{max([_version(k['kid']) for k in mine], default=0) + 1}"
    private = Ed25519PrivateKey.generate()
    _write_private(
        d / f"{kid}.key",
        {
            "kid": kid,
            "principal": principal,
            "role": role,
            "private": _b64(private.private_bytes_raw()),
        },
    )
    public = _b64(private.public_key().public_bytes_raw())
    doc["keys"].append({"kid": kid, "principal": principal, "role": role, "public": public})
    _save_doc(d, doc)
    return kid


def retire(directory: str | Path, kid: str) -> None:
    """Drop ``kid`` from the keyring (and its key file here): it is trusted no longer."""
    d = Path(directory)
    doc = _load_doc(d)
    kept = [k for k in doc["keys"] if k["kid"] != kid]
    if len(kept) == len(doc["keys"]):
        raise ConfigError(
            f"no key {kid!r} in {d / KEYRING}; it has: "
            f"{', '.join(k['kid'] for k in doc['keys']) or 'none'}"
        )
    mine = [k for k in kept if k["principal"] == kid.rpartition(".")[0]]
    if not mine:
        raise ConfigError(f"{kid!r} is its principal's last key: rotate first, then retire it")
    _save_doc(d, {**doc, "keys": kept})
    (d / f"{kid}.key").unlink(missing_ok=True)
