"""matrix-nio's crypto store, kept in the bot's own database.

nio's Olm machine calls its store synchronously (while it decrypts to-device messages inside
``client.sync()``, while it encrypts room keys inside ``room_send()``), but the bot's
database is asynchronous. So this store

* answers every ``load_*`` call from memory, after one ``await store.load()``;
* records every ``save_*`` call as a changed row (synchronous, no I/O);
* writes the changed rows with ``await store.flush(session)``: inside the sync loop's
  transaction (crypto state, parked events and the sync token commit together), or, with
  no session, in a transaction of its own right before any request nio sends
  (``BotClient.before_request``): one-time keys are stored before ``/keys/upload``
  publishes them, an advanced Olm ratchet before ``/sendToDevice`` uses it.

Both kinds of transaction check the leader lease first (``guard``), and always in the same
order (the database's lock, then this store's), so two flushes never deadlock and a
process that lost the lease never writes. nio's own SQLite store writes each call in its
own transaction and saves the account only after ``/keys/upload`` answered: a crash there
loses keys the server already hands out (measured in the E2EE prototype).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any

from nio import AsyncClient, ForwardedRoomKeyEvent
from nio.crypto import (
    DeviceStore,
    GroupSessionStore,
    InboundGroupSession,
    Olm,
    OlmAccount,
    OlmDevice,
    OutgoingKeyRequest,
    Session,
    SessionStore,
    TrustState,
)
from nio.store import MatrixStore
from sqlalchemy.ext.asyncio import AsyncSession

from bot.crypto.keys import StoreKeyError
from storage import Database
from storage import crypto as stored

log = logging.getLogger(__name__)

_DATE = "%Y-%m-%d %H:%M:%S.%f"
Row = dict[str, Any]
Guard = Callable[[AsyncSession], Awaitable[None]]
Change = tuple[str, str, Row | None]
"""(kind, key, value or None to delete)."""


class BotOlm(Olm):  # type: ignore[misc]  # nio is untyped
    """nio's Olm machine, accepting one more kind of forwarded room key.

    nio takes a forwarded key only from the bot's own verified devices. The bot asks the
    *sender's* device for a key it missed (``m.room_key_request``); a forward that comes
    from the very device that created the session (the Olm channel proves its curve25519
    key) is as good as the original ``m.room_key`` and is accepted too.
    """

    def _should_accept_forward(
        self, sender: str, sender_key: str, event: ForwardedRoomKeyEvent
    ) -> bool:
        if super()._should_accept_forward(sender, sender_key, event):
            return True
        request = self.outgoing_key_requests.get(event.session_id)
        content = event.source.get("content") or {}
        return bool(
            request is not None
            and event.algorithm == "m.megolm.v1.aes-sha2"
            and request.room_id == event.room_id
            and content.get("sender_key") == sender_key  # forwarded by its creator
            and not content.get("forwarding_curve25519_key_chain")
        )


class DbCryptoStore(MatrixStore):  # type: ignore[misc]  # nio is untyped
    """The ``MatrixStore`` interface over memory and the bot's database.

    Not for ``AsyncClientConfig(store=...)`` (nio would build it with a file path): create
    it, ``await load()``, then ``install(client)``.
    """

    def __init__(
        self,
        db: Database,
        user_id: str,
        device_id: str,
        pickle_key: str,
        *,
        guard: Guard,
        clock: Callable[[], datetime],
    ) -> None:
        # MatrixStore is a dataclass whose __post_init__ opens an SQLite file: not called.
        self.user_id = user_id
        self.device_id = device_id
        self.pickle_key = pickle_key
        self.store_path = ""
        self.db = db
        self.guard = guard
        self.clock = clock
        self.account_key = f"{user_id}/{device_id}"
        self._rows: dict[tuple[str, str], Row] = {}
        self._dirty: dict[tuple[str, str], Row | None] = {}
        self._account: OlmAccount | None = None
        self._written_account: str | None = None
        self._olm: dict[str, tuple[str, Session]] = {}
        self._olm_dirty: set[str] = set()
        self._lock = asyncio.Lock()
        self._last: tuple[list[Change], str | None] | None = None

    def __repr__(self) -> str:
        return f"DbCryptoStore({self.account_key})"

    # --- loading and installing ------------------------------------------------------------
    async def load(self) -> None:
        """Read this device's rows into memory (before the Olm machine is built)."""
        async with self.db.read() as session:
            raw = await stored.load_crypto_rows(session, self.account_key)
        self._rows = {kind_key: json.loads(value) for kind_key, value in raw.items()}
        account = self._rows.get(("account", ""))
        self._written_account = account["pickle"] if account else None

    @property
    def has_account(self) -> bool:
        return ("account", "") in self._rows

    def install(self, client: AsyncClient) -> Olm:
        """Attach to a client that has its user and device (``restore_login`` with
        ``store_path=""`` leaves nio's own store unopened)."""
        client.store = self
        client.olm = BotOlm(client.user_id, client.device_id, self)
        client.encrypted_rooms = self.load_encrypted_rooms()
        return client.olm

    # --- writing ---------------------------------------------------------------------------
    @property
    def pending(self) -> bool:
        if self._dirty or self._olm_dirty:
            return True
        return self._account is not None and self._account_pickle() != self._written_account

    def _account_pickle(self) -> str:
        assert self._account is not None
        return str(self._account.pickle(self.pickle_key).decode())

    def _collect(self) -> list[Change]:
        """What must be written, taken synchronously (a consistent snapshot)."""
        changes: list[Change] = []
        if self._account is not None:
            pickle = self._account_pickle()
            shared = bool(self._account.shared)
            known = self._rows.get(("account", ""))
            # One-time keys made for an upload change the pickle without a save_account()
            # call: compare instead of trusting nio to call.
            if known is None or known.get("pickle") != pickle or known.get("shared") != shared:
                row = {"pickle": pickle, "shared": shared}
                self._rows[("account", "")] = row
                changes.append(("account", "", row))
        for session_id in sorted(self._olm_dirty):
            sender_key, session = self._olm[session_id]
            row = {
                "sender_key": sender_key,
                "pickle": session.pickle(self.pickle_key).decode(),
                "created": session.creation_time.strftime(_DATE),
                "used": session.use_time.strftime(_DATE),
            }
            self._rows[("olm", session_id)] = row
            changes.append(("olm", session_id, row))
        self._olm_dirty = set()
        changes += [(kind, key, row) for (kind, key), row in self._dirty.items()]
        self._dirty = {}
        return changes

    async def flush(self, session: AsyncSession | None = None) -> int:
        """Write what changed; inside ``session``'s transaction (its owner checked the lease
        and commits) or in a transaction of this store's own. Returns the rows written."""
        if session is not None:
            self._last = None
            return await self._flush_into(session, keep_for_requeue=True)
        if not self.pending:
            return 0
        async with self.db.session() as own:
            await self.guard(own)  # the lease row is locked from here to the commit
            return await self._flush_into(own, keep_for_requeue=False)

    async def _flush_into(self, session: AsyncSession, *, keep_for_requeue: bool) -> int:
        async with self._lock:
            if not self.pending:
                return 0
            written_before = self._written_account
            changes = self._collect()
            try:
                await stored.write_crypto_rows(
                    session,
                    self.account_key,
                    [(k, key, None if row is None else _dumps(row)) for k, key, row in changes],
                    self.clock(),
                )
            except BaseException:
                self._requeue(changes, written_before)
                raise
            for kind, _key, row in changes:
                if kind == "account" and row is not None:
                    self._written_account = row["pickle"]
            self._last = (changes, written_before) if keep_for_requeue else None
            return len(changes)

    def requeue_last(self) -> None:
        """The transaction ``flush(session)`` wrote into did not commit: write it again."""
        if self._last is not None:
            changes, written_before = self._last
            self._requeue(changes, written_before)
            self._last = None

    def forget_last(self) -> None:
        """The transaction ``flush(session)`` wrote into committed."""
        self._last = None

    def _requeue(self, changes: Iterable[Change], written_before: str | None) -> None:
        self._written_account = written_before
        for kind, key, row in changes:
            if kind == "olm":
                self._olm_dirty.add(key)
            elif kind == "account":
                self._rows.pop(("account", ""), None)  # compared again at the next flush
            else:
                self._dirty.setdefault((kind, key), row)

    # --- nio's synchronous interface -------------------------------------------------------
    def _set(self, kind: str, key: str, row: Row | None) -> None:
        if row is None:
            self._rows.pop((kind, key), None)
        else:
            self._rows[(kind, key)] = row
        self._dirty[(kind, key)] = row

    def _of(self, kind: str) -> list[tuple[str, Row]]:
        return [(key, row) for (k, key), row in self._rows.items() if k == kind]

    def load_account(self) -> OlmAccount | None:
        row = self._rows.get(("account", ""))
        if row is None:
            return None
        try:
            account = OlmAccount.from_pickle(
                row["pickle"].encode(), self.pickle_key, bool(row["shared"])
            )
        except Exception:
            raise StoreKeyError(
                f"the stored Olm account of {self.account_key} cannot be opened with "
                "BBWT_MATRIX__STORE_KEY; was the key changed? Start the bot with the key it "
                "was first run with (a new key would mean a new identity for everyone)."
            ) from None
        self._account = account
        return account

    def save_account(self, account: OlmAccount) -> None:
        self._account = account  # pickled and compared at flush time

    def load_sessions(self) -> SessionStore:
        sessions = SessionStore()
        for session_id, row in self._of("olm"):
            session = Session.from_pickle(
                row["pickle"].encode(),
                datetime.strptime(row["created"], _DATE),
                self.pickle_key,
                datetime.strptime(row["used"], _DATE),
            )
            sessions.add(row["sender_key"], session)
            self._olm[session_id] = (row["sender_key"], session)
        return sessions

    def save_session(self, curve_key: str, session: Session) -> None:
        self._olm[session.id] = (curve_key, session)
        self._olm_dirty.add(session.id)

    def load_inbound_group_sessions(self) -> GroupSessionStore:
        sessions = GroupSessionStore()
        for _session_id, row in self._of("megolm_in"):
            sessions.add(
                InboundGroupSession.from_pickle(
                    row["pickle"].encode(),
                    row["fp_key"],
                    row["sender_key"],
                    row["room_id"],
                    self.pickle_key,
                    list(row["chain"]),
                )
            )
        return sessions

    def save_inbound_group_session(self, session: InboundGroupSession) -> None:
        self._set(
            "megolm_in",
            session.id,
            {
                "room_id": session.room_id,
                "sender_key": session.sender_key,
                "fp_key": session.ed25519,
                "pickle": session.pickle(self.pickle_key).decode(),
                "chain": list(session.forwarding_chain),
            },
        )

    def load_device_keys(self) -> DeviceStore:
        devices = DeviceStore()
        for key, row in self._of("device"):
            user_id, device_id = key.split("|", 1)
            device = OlmDevice(
                user_id,
                device_id,
                dict(row["keys"]),
                display_name=row["display_name"],
                deleted=row["deleted"],
            )
            device.trust_state = self._trust(device)
            devices.add(device)
        return devices

    def save_device_keys(self, device_keys: dict[str, dict[str, OlmDevice]]) -> None:
        for user_id, devices in device_keys.items():
            for device_id, device in devices.items():
                self._set(
                    "device",
                    f"{user_id}|{device_id}",
                    {
                        "keys": dict(device.keys),
                        "display_name": device.display_name,
                        "deleted": device.deleted,
                    },
                )

    def load_encrypted_rooms(self) -> set[str]:
        return {key for key, _row in self._of("room")}

    def save_encrypted_rooms(self, rooms: Iterable[str]) -> None:
        for room_id in rooms:
            if ("room", room_id) not in self._rows:
                self._set("room", room_id, {})

    def delete_encrypted_room(self, room: str) -> None:
        self._set("room", room, None)

    def load_outgoing_key_requests(self) -> dict[str, OutgoingKeyRequest]:
        return {
            key: OutgoingKeyRequest(key, row["session_id"], row["room_id"], row["algorithm"])
            for key, row in self._of("key_request")
        }

    def add_outgoing_key_request(self, key_request: OutgoingKeyRequest) -> None:
        self._set(
            "key_request",
            key_request.request_id,
            {
                "session_id": key_request.session_id,
                "room_id": key_request.room_id,
                "algorithm": key_request.algorithm,
            },
        )

    def remove_outgoing_key_request(self, key_request: OutgoingKeyRequest) -> None:
        self._set("key_request", key_request.request_id, None)

    def save_sync_token(self, token: str) -> None:
        """The bot keeps its own sync token (with the events, in one transaction)."""

    def load_sync_token(self) -> str | None:
        return None

    # Trust, keyed by the device's ed25519 key so that a replaced key is not trusted.
    @staticmethod
    def _trust_key(device: OlmDevice) -> str:
        return f"{device.user_id}|{device.device_id}|{device.ed25519}"

    def _trust(self, device: OlmDevice) -> TrustState:
        row = self._rows.get(("trust", self._trust_key(device)))
        return TrustState(row["state"]) if row else TrustState.unset

    def _set_trust(self, device: OlmDevice, state: TrustState) -> bool:
        if self._trust(device) == state:
            return False
        value = None if state == TrustState.unset else {"state": state.value}
        self._set("trust", self._trust_key(device), value)
        device.trust_state = state
        return True

    def _unset_if(self, device: OlmDevice, state: TrustState) -> bool:
        return self._trust(device) == state and self._set_trust(device, TrustState.unset)

    def verify_device(self, device: OlmDevice) -> bool:
        return self._set_trust(device, TrustState.verified)

    def unverify_device(self, device: OlmDevice) -> bool:
        return self._unset_if(device, TrustState.verified)

    def is_device_verified(self, device: OlmDevice) -> bool:
        return bool(self._trust(device) == TrustState.verified)

    def blacklist_device(self, device: OlmDevice) -> bool:
        return self._set_trust(device, TrustState.blacklisted)

    def unblacklist_device(self, device: OlmDevice) -> bool:
        return self._unset_if(device, TrustState.blacklisted)

    def is_device_blacklisted(self, device: OlmDevice) -> bool:
        return bool(self._trust(device) == TrustState.blacklisted)

    def ignore_device(self, device: OlmDevice) -> bool:
        return self._set_trust(device, TrustState.ignored)

    def unignore_device(self, device: OlmDevice) -> bool:
        return self._unset_if(device, TrustState.ignored)

    def ignore_devices(self, devices: list[OlmDevice]) -> None:
        for device in devices:
            self._set_trust(device, TrustState.ignored)

    def is_device_ignored(self, device: OlmDevice) -> bool:
        return bool(self._trust(device) == TrustState.ignored)


def _dumps(row: Row) -> str:
    return json.dumps(row, separators=(",", ":"))
