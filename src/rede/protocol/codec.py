"""Envelopes to bytes and back: validation at the edge, a size limit, signing.

Signing is either one shared HMAC key (``signing_key``: every holder can sign as anyone) or
per-agent Ed25519 identities (``keys``, :mod:`rede.protocol.identity`: each envelope signed
by its sender's own key and checked against the keyring, so no agent can speak for another).

Every bus implementation uses one :class:`Codec`, so the rules for what is accepted are the
same in-process and over Redis. Errors name what is wrong: the field that failed validation,
the size and the limit, or the missing signature.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import TYPE_CHECKING

from pydantic import ValidationError

from rede.errors import MalformedMessage, MessageTooLarge, SignatureError, one_line
from rede.protocol.messages import ENVELOPE_ADAPTER, Envelope

if TYPE_CHECKING:
    from rede.protocol.identity import KeySet

DEFAULT_MAX_MESSAGE_BYTES = 1_000_000


def describe_validation_error(exc: ValidationError) -> str:
    """``payload.task.confidence: Input should be less than or equal to 1`` style summary, on
    one line: a field name that is not a plain word (it came from the input) is quoted."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(_loc_part(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {one_line(err['msg'])}")
    more = exc.error_count() - len(parts)
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)


def _loc_part(part: str | int) -> str:
    text = str(part)
    return text if _PLAIN.fullmatch(text) else repr(text)


_PLAIN = re.compile(r"[\w\-\[\]]{1,64}")


class Codec:
    """Encodes and decodes envelopes for the wire.

    ``max_bytes`` bounds an encoded envelope (checked on publish and on receipt).
    ``signing_key``, when set, signs every envelope with HMAC-SHA256 on encode and rejects
    unsigned or forged envelopes on decode. ``keys`` instead signs each envelope with its
    sender's own identity and verifies sender, key and claims on decode.
    """

    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        signing_key: str | bytes | None = None,
        keys: KeySet | None = None,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        key = signing_key.encode() if isinstance(signing_key, str) else signing_key
        self._key: bytes | None = key or None
        if self._key is not None and keys is not None:
            raise ValueError("sign with a shared key or with per-agent keys, not both")
        self._keys = keys

    @property
    def signing(self) -> bool:
        return self._key is not None or self._keys is not None

    def as_sender(self, sender: str) -> str:
        """Who the bus's own notices come from: ``sender`` (the consumer that gave up on a
        task) where per-agent keys can sign as it, so its agent's key vouches; else
        ``"bus"``."""
        if self._keys is not None and self._keys.holds(sender):
            return sender
        return "bus"

    @property
    def proves_sender(self) -> bool:
        """Whether a decoded envelope's sender is proven (per-agent keys), not only that some
        key holder sent it (a shared key lets every holder sign as anyone)."""
        return self._keys is not None

    def _signature(self, body: bytes) -> str:
        assert self._key is not None
        return hmac.new(self._key, body, hashlib.sha256).hexdigest()

    def encode(self, envelope: Envelope) -> bytes:
        if self._keys is not None:  # the signature is the last field: appended, not re-dumped
            signer = self._keys.signer(envelope.sender)
            signed = envelope.model_copy(update={"kid": signer.kid})
            body = ENVELOPE_ADAPTER.dump_json(signed, exclude={"sig"})
            data = body[:-1] + b',"sig":"' + signer.sign(body).encode() + b'"}'
            if len(data) > self.max_bytes:
                raise MessageTooLarge(len(data), self.max_bytes)
            return data
        if self._key is not None:
            unsigned = envelope.model_copy(update={"sig": None})
            body = ENVELOPE_ADAPTER.dump_json(unsigned, exclude={"sig"})
            envelope = envelope.model_copy(update={"sig": self._signature(body)})
        data = ENVELOPE_ADAPTER.dump_json(envelope)
        if len(data) > self.max_bytes:
            raise MessageTooLarge(len(data), self.max_bytes)
        return data

    def check_size(self, envelope: Envelope) -> int:
        """The envelope's encoded size; ``MessageTooLarge`` if over the limit. For a bus that
        carries envelope objects (the in-process one, unsigned): the limit holds as on the
        wire, and the bytes are made once to measure, never parsed back."""
        size = len(ENVELOPE_ADAPTER.dump_json(envelope))
        if size > self.max_bytes:
            raise MessageTooLarge(size, self.max_bytes)
        return size

    def decode(self, data: bytes) -> Envelope:
        if len(data) > self.max_bytes:
            raise MessageTooLarge(len(data), self.max_bytes)
        try:
            envelope = ENVELOPE_ADAPTER.validate_json(data)
        except ValidationError as exc:
            raise MalformedMessage(f"invalid envelope: {describe_validation_error(exc)}") from exc
        if self._keys is not None:
            body = _signed_part(data, envelope.sig) or ENVELOPE_ADAPTER.dump_json(
                envelope, exclude={"sig"}
            )
            self._keys.check(envelope, body)
        elif self._key is not None:
            if not envelope.sig:
                raise SignatureError(
                    f"unsigned envelope {envelope.id!r} from {envelope.sender!r} "
                    "rejected: this bus requires a signature"
                )
            body = ENVELOPE_ADAPTER.dump_json(
                envelope.model_copy(update={"sig": None}), exclude={"sig"}
            )
            expected = self._signature(body).encode()
            if not hmac.compare_digest(envelope.sig.encode(), expected):  # any text, not only ASCII
                raise SignatureError(
                    f"forged or corrupted envelope {envelope.id!r} from {envelope.sender!r} "
                    "rejected: signature does not match the shared key"
                )
        return envelope


def _signed_part(data: bytes, sig: str | None) -> bytes | None:
    """What :meth:`Codec.encode` signed, where ``data`` ends with the signature it appended
    (else None: the caller serialises the envelope again)."""
    if not sig:
        return None
    tail = b',"sig":"' + sig.encode() + b'"}'
    return data[: -len(tail)] + b"}" if data.endswith(tail) else None


def lenient_text(data: bytes, limit: int = 2000) -> str:
    """The start of some bytes as text, for error reports about them."""
    return data[:limit].decode("utf-8", errors="replace")
