"""Cross-signing of the bot's own device (matrix-nio 0.26 has none).

Current Element ("invisible crypto", ``OnlySignedDevicesIsolationMode``) shares room keys
only with devices their owner has cross-signed: an uncross-signed bot gets messages it can
never decrypt. So the bot owns a master key and a self-signing key (Ed25519 seeds, sealed
with the store key in the database) and, on every start:

1. asks ``/keys/query`` whether the published master and self-signing keys are its own;
2. if not (first start, or the keys were lost), uploads them
   (``/keys/device_signing/upload``), answering the password challenge when asked;
3. signs its device with the self-signing key (and the master key with the device key, as
   Element does for its own devices) via ``/keys/signatures/upload`` when a signature is
   missing.

A new device of the same account (after a re-login) repeats the steps: the same keys sign
it, so people never see the bot's identity change. Keys are generated only when none are
stored, and saved before they are published.

Signing uses ``signedjson`` and ``canonicaljson`` (matrix-org's own, what Synapse itself
uses to sign and check JSON) over PyNaCl's Ed25519.
"""

from __future__ import annotations

import base64
import copy
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import canonicaljson
import nacl.signing
from nio import AsyncClient
from signedjson.key import decode_signing_key_base64, decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, sign_json, verify_signed_json

from bot.matrix import MatrixError, client_json

log = logging.getLogger(__name__)

SECRET_NAME = "cross_signing"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _signing_key(seed: str) -> Any:
    public = _b64(nacl.signing.SigningKey(_unb64(seed)).verify_key.encode())
    return decode_signing_key_base64("ed25519", public, seed)  # key id "ed25519:<public>"


@dataclass(frozen=True)
class CrossSigningKeys:
    """The two private seeds (unpadded base64); secret."""

    master_seed: str = field(repr=False)
    self_signing_seed: str = field(repr=False)

    @classmethod
    def generate(cls) -> CrossSigningKeys:
        return cls(
            _b64(bytes(nacl.signing.SigningKey.generate())),
            _b64(bytes(nacl.signing.SigningKey.generate())),
        )

    @classmethod
    def from_secret(cls, value: Any) -> CrossSigningKeys:
        return cls(str(value["master_seed"]), str(value["self_signing_seed"]))

    def as_secret(self) -> dict[str, str]:
        return {"master_seed": self.master_seed, "self_signing_seed": self.self_signing_seed}

    @property
    def master(self) -> Any:
        return _signing_key(self.master_seed)

    @property
    def self_signing(self) -> Any:
        return _signing_key(self.self_signing_seed)

    @property
    def master_public(self) -> str:
        return str(self.master.version)

    @property
    def self_signing_public(self) -> str:
        return str(self.self_signing.version)

    def master_key_json(self, user_id: str) -> dict[str, Any]:
        public = self.master_public
        return {"user_id": user_id, "usage": ["master"], "keys": {f"ed25519:{public}": public}}

    def self_signing_key_json(self, user_id: str) -> dict[str, Any]:
        public = self.self_signing_public
        key = {"user_id": user_id, "usage": ["self_signing"], "keys": {f"ed25519:{public}": public}}
        return dict(sign_json(key, user_id, self.master))


def signed_by(obj: dict[str, Any], user_id: str, public: str, key_name: str | None = None) -> bool:
    """Does ``obj`` carry a valid signature of ``user_id``'s key ``ed25519:<key_name>``
    (``key_name`` is the public key for cross-signing keys, the device id for devices)?"""
    verify_key = decode_verify_key_bytes(f"ed25519:{key_name or public}", _unb64(public))
    try:
        verify_signed_json(copy.deepcopy(obj), user_id, verify_key)
    except (SignatureVerifyException, KeyError):
        return False
    return True


def only_key(key_json: Any) -> str | None:
    """The one public key of a cross-signing key object."""
    if not isinstance(key_json, dict) or not isinstance(key_json.get("keys"), dict):
        return None
    values = list(key_json["keys"].values())
    return str(values[0]) if values else None


def _unsigned(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


@dataclass
class Report:
    """What one run did (for the log and the tests)."""

    generated: bool = False
    uploaded: bool = False
    password_asked: bool = False
    signed: list[str] = field(default_factory=list)
    master: str = ""


class CrossSigner:
    def __init__(
        self,
        client: AsyncClient,
        *,
        password: str | None,
        load_secret: Callable[[], Awaitable[Any]],
        save_secret: Callable[[dict[str, str]], Awaitable[None]],
    ) -> None:
        self.client = client
        self.password = password
        self.load_secret = load_secret
        self.save_secret = save_secret

    async def _query_own(self) -> dict[str, Any]:
        status, body = await client_json(
            self.client,
            "POST",
            "/_matrix/client/v3/keys/query",
            {"device_keys": {self.client.user_id: []}},
        )
        if status != 200:
            raise MatrixError(f"could not read the bot's own keys (HTTP {status})")
        return body

    async def _upload(self, keys: CrossSigningKeys, report: Report) -> None:
        """``/keys/device_signing/upload``; answers the password challenge when asked."""
        user = self.client.user_id
        body: dict[str, Any] = {
            "master_key": keys.master_key_json(user),
            "self_signing_key": keys.self_signing_key_json(user),
        }
        path = "/_matrix/client/v3/keys/device_signing/upload"
        status, answer = await client_json(self.client, "POST", path, body)
        if status == 401 and "flows" in answer:
            report.password_asked = True
            flows = answer.get("flows") or []
            if self.password is None or not any(
                f.get("stages") == ["m.login.password"] for f in flows if isinstance(f, dict)
            ):
                raise MatrixError(
                    "the homeserver wants the bot's password to publish its cross-signing "
                    "keys; set BBWT_MATRIX__PASSWORD (an access token alone is not enough "
                    "for this one step)"
                )
            body["auth"] = {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": user},
                "password": self.password,
                "session": answer.get("session"),
            }
            status, answer = await client_json(self.client, "POST", path, body)
        if status != 200:
            raise MatrixError(
                f"could not publish the cross-signing keys (HTTP {status}, "
                f"{answer.get('errcode', 'no error code')})"
            )
        report.uploaded = True

    async def ensure(self) -> Report:
        """Make the device cross-signed by the bot's own, lasting identity (idempotent:
        one request when everything is in place)."""
        report = Report()
        client = self.client
        user, device_id = client.user_id, client.device_id
        stored = await self.load_secret()
        if stored:
            keys = CrossSigningKeys.from_secret(stored)
        else:
            keys = CrossSigningKeys.generate()
            await self.save_secret(keys.as_secret())  # before publishing: never lose one
            report.generated = True

        data = await self._query_own()
        published = (
            only_key((data.get("master_keys") or {}).get(user)),
            only_key((data.get("self_signing_keys") or {}).get(user)),
        )
        if published != (keys.master_public, keys.self_signing_public):
            if published[0] is not None:
                log.warning(
                    "the published cross-signing keys of %s are not the ones the bot keeps; "
                    "publishing its own again",
                    user,
                )
            try:
                await self._upload(keys, report)
            except MatrixError:
                if published[0] is None or stored is None:
                    raise
                # Synapse refuses to publish keys again that were replaced meanwhile (it
                # keeps every key it saw): someone reset the bot's identity. Start anew.
                log.warning("could not restore the bot's cross-signing keys; making new ones")
                keys = CrossSigningKeys.generate()
                await self.save_secret(keys.as_secret())
                report.generated = True
                await self._upload(keys, report)
            data = await self._query_own()

        device = ((data.get("device_keys") or {}).get(user) or {}).get(device_id)
        if not isinstance(device, dict):
            raise MatrixError(f"the homeserver does not list the bot's device {device_id}")
        signatures: dict[str, Any] = {}
        if not signed_by(device, user, keys.self_signing_public):
            signatures[device_id] = sign_json(_unsigned(device), user, keys.self_signing)
        master = (data.get("master_keys") or {}).get(user) or keys.master_key_json(user)
        own_signatures = (master.get("signatures") or {}).get(user) or {}
        if f"ed25519:{device_id}" not in own_signatures and client.olm is not None:
            # The device vouches for the master key, as Element's own devices do.
            unsigned = _unsigned(master)
            signature = client.olm.account.sign(
                canonicaljson.encode_canonical_json(unsigned).decode("utf-8")
            )
            unsigned["signatures"] = {user: {f"ed25519:{device_id}": signature}}
            signatures[keys.master_public] = unsigned
        if signatures:
            status, answer = await client_json(
                client, "POST", "/_matrix/client/v3/keys/signatures/upload", {user: signatures}
            )
            if status != 200 or answer.get("failures"):
                raise MatrixError(
                    f"could not upload the device's signatures (HTTP {status}): "
                    f"{sorted((answer.get('failures') or {}).get(user, {}))}"
                )
            report.signed = sorted(signatures)
        report.master = keys.master_public
        return report
