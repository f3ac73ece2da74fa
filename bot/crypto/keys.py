"""Secrets at rest: everything the bot keeps that would let someone act as it is encrypted
with keys derived from one secret in the environment (``BBWT_MATRIX__STORE_KEY``).

Two keys are derived from it with keyed BLAKE2b (the store key is a long random secret,
so no slow password hashing is needed): the passphrase nio hands to vodozemac to encrypt
Olm/Megolm pickles, and a key for sealing the bot's own secrets (cross-signing seeds, the
access token) with XSalsa20-Poly1305 (PyNaCl's ``SecretBox``). Changing the store key makes
everything sealed with the old one unreadable; the bot then refuses to start rather than
create a new identity.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.secret
from pydantic import SecretStr


class StoreKeyError(RuntimeError):
    """Something sealed cannot be opened with the store key given."""


def _derive(secret: str, purpose: bytes) -> bytes:
    return bytes(
        nacl.hash.blake2b(
            secret.encode("utf-8"),
            digest_size=32,
            person=purpose.ljust(16, b"\0")[:16],
            encoder=nacl.encoding.RawEncoder,
        )
    )


class StoreKeys:
    """The keys derived from the store key; never logged, never written anywhere."""

    def __init__(self, store_key: SecretStr) -> None:
        secret = store_key.get_secret_value()
        self.pickle_key = base64.b64encode(_derive(secret, b"bbwt-pickle")).decode("ascii")
        """The passphrase nio gives vodozemac for every pickle."""
        self._box = nacl.secret.SecretBox(_derive(secret, b"bbwt-seal"))

    def __repr__(self) -> str:  # keep keys out of tracebacks and logs
        return "StoreKeys(<hidden>)"

    def seal(self, value: Any) -> str:
        """JSON-encode and encrypt ``value``; the result is safe to store."""
        data = json.dumps(value, separators=(",", ":")).encode("utf-8")
        return base64.b64encode(bytes(self._box.encrypt(data))).decode("ascii")

    def unseal(self, sealed: str) -> Any:
        try:
            data = self._box.decrypt(base64.b64decode(sealed))
        except (nacl.exceptions.CryptoError, ValueError):
            raise StoreKeyError(
                "a stored secret cannot be opened with BBWT_MATRIX__STORE_KEY; was the key "
                "changed? Start the bot with the key it was first run with."
            ) from None
        return json.loads(data)
