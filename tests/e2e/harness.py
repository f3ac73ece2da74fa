"""End-to-end harness: the real bot as a ``bbwt-bot run`` process, people as nio clients.

People's clients encrypt, as people's clients do (Element X always does): each person is
an nio client with encryption on (its crypto store in the test's temporary folder), keys
uploaded before anything else, and ``Person.open_dm`` creates the direct chat the way
Element and Element X do (``is_direct``, ``trusted_private_chat``, an initial
``m.room.encryption``). Files they send from an encrypted room carry ``file`` objects.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import signal
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    DownloadError,
    JoinError,
    MessageDirection,
    RoomCreateError,
    RoomMessagesResponse,
    RoomPreset,
    RoomSendResponse,
    SyncResponse,
    UploadResponse,
)
from nio.crypto.attachments import decrypt_attachment, encrypt_attachment

from bot.devserver import LocalSynapse, SynapseUser

REPO = Path(__file__).resolve().parents[2]
Event = dict[str, Any]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def write_config(
    path: Path, sections: dict[str, dict[str, Any]], cops: list[dict[str, Any]]
) -> None:
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {toml_value(val)}" for key, val in values.items()]
        lines.append("")
    for cop in cops:
        lines.append("[[cops]]")
        lines += [f"{key} = {toml_value(val)}" for key, val in cop.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BotProcess:
    """``bbwt-bot run`` against the test Synapse, with its own account, rooms and database."""

    def __init__(
        self,
        synapse: LocalSynapse,
        folder: Path,
        *,
        account: SynapseUser,
        db_url: str,
        admins: list[str],
        cops: list[dict[str, Any]],
        matrix: dict[str, Any] | None = None,
        alias_prefix: str | None = None,
        login: str = "password",
        store_key: str | None = None,
        claims: dict[str, Any] | None = None,
        process: dict[str, Any] | None = None,
        events: dict[str, Any] | None = None,
    ) -> None:
        self.synapse = synapse
        self.store_key = store_key or secrets.token_urlsafe(32)
        self._args: dict[str, Any] = {
            "account": account,
            "db_url": db_url,
            "admins": admins,
            "cops": cops,
            "matrix": matrix,
            "login": login,
            "store_key": self.store_key,
            "claims": claims,
            "process": process,
            "events": events,
        }
        self.login = login
        self.folder = folder
        self.account = account
        self.user_id = account.user_id
        self.db_url = db_url
        self.port = free_port()
        self.alias_prefix = alias_prefix or f"t{uuid.uuid4().hex[:8]}"
        self.config_path = folder / "bbwt_bot.toml"
        self.log_path = folder / "bot.log"
        write_config(
            self.config_path,
            {
                "matrix": {
                    "homeserver": synapse.base_url,
                    "user_id": account.user_id,
                    "alias_prefix": self.alias_prefix,
                    "sync_timeout": "10s",
                    **(matrix or {}),
                },
                "database": {"url": db_url},
                "http": {"host": "127.0.0.1", "port": self.port},
                "secretariat": {"admins": admins},
                # Tests never reach the internet: no exchange rates are fetched unless a
                # test serves them locally.
                "claims": {"rates_url": "", **(claims or {})},
                "process": process or {},
                "events": events or {},
            },
            cops,
        )
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    def twin(self, folder: Path) -> BotProcess:
        """A second process of the same bot: same account, database and rooms."""
        folder.mkdir(parents=True, exist_ok=True)
        return BotProcess(self.synapse, folder, alias_prefix=self.alias_prefix, **self._args)

    def alias(self, name: str) -> str:
        return f"#{self.alias_prefix}-{name.lower()}:{self.synapse.server_name}"

    async def start(
        self, timeout: float = 90, role: str = "active", event_loop: str | None = None
    ) -> None:
        """Start the process and wait until ``/healthz`` reports ``role`` (``active``, or
        ``standby`` for a second process waiting for the lease); ``event_loop``: the
        ``process.event_loop`` setting of this start (None: the default)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("BBWT_")}
        env["PYTHONUNBUFFERED"] = "1"
        if event_loop is not None:
            env["BBWT_PROCESS__EVENT_LOOP"] = event_loop
        env["BBWT_MATRIX__STORE_KEY"] = self.store_key
        if self.login == "token":
            env["BBWT_MATRIX__ACCESS_TOKEN"] = self.account.access_token
        else:
            env["BBWT_MATRIX__PASSWORD"] = self.account.password
        log = self.log_path.open("ab")
        log.write(f"\n===== start {self.starts} =====\n".encode())
        log.flush()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "--log-level",
            "INFO",
            "run",
            "--config",
            str(self.config_path),
            cwd=self.folder,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        self.starts += 1
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    raise RuntimeError(
                        f"the bot exited with {self.proc.returncode}:\n{self.tail()}"
                    )
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz") as resp:
                        if resp.status == 200 and (await resp.json()).get("role") == role:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the bot did not become {role} in {timeout}s:\n{self.tail()}")

    async def health(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{self.port}/healthz") as resp:
                return dict(await resp.json())

    async def wait_role(self, role: str, timeout: float = 30) -> float:
        """Wait until ``/healthz`` says ``role`` (and, for ``active``, that the process is
        fully up); returns the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                health = await self.health()
                if health.get("role") == role and health.get("status") in ("ok", role):
                    return time.monotonic() - started
            except (aiohttp.ClientError, ValueError):
                pass
            await asyncio.sleep(0.05)
        raise AssertionError(f"the bot did not become {role} in {timeout}s:\n{self.tail()}")

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise RuntimeError(f"the bot did not stop within {timeout}s:\n{self.tail()}") from None

    async def kill(self) -> None:
        await self.stop(signal.SIGKILL)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    async def metrics(self) -> dict[str, float]:
        """Prometheus samples as ``name{labels}`` -> value."""
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{self.port}/metrics") as resp:
                text = await resp.text()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


PERSON_FILTER = {"room": {"timeline": {"limit": 100}}, "presence": {"types": []}}
ENCRYPTION_STATE = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}


def has_file(event: Event) -> bool:
    """Does this message carry a file (plain ``url`` or encrypted ``file`` object)?"""
    content = event.get("content") or {}
    return isinstance(content.get("url"), str) or isinstance(content.get("file"), dict)


class Person:
    """A Matrix user driven by an encrypting nio client that keeps syncing in the background."""

    def __init__(self, synapse: LocalSynapse, account: SynapseUser, store: Path) -> None:
        self.synapse = synapse
        self.account = account
        self.user_id = account.user_id
        store.mkdir(parents=True, exist_ok=True)
        self.client = AsyncClient(
            synapse.base_url,
            account.user_id,
            device_id=account.device_id,
            store_path=str(store),
            config=AsyncClientConfig(
                max_limit_exceeded=None,
                store_sync_tokens=False,
                encryption_enabled=True,
                pickle_key="test-person",
            ),
        )
        self.client.restore_login(account.user_id, account.device_id, account.access_token)
        self.events: dict[str, list[Event]] = {}
        self.invites: set[str] = set()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._token: str | None = None

    async def start(self) -> None:
        assert self.client.olm is not None, "the person's client must encrypt"
        await self.client.keys_upload()
        await self._sync(0)
        self._task = asyncio.create_task(self._loop())

    async def stop_syncing(self) -> None:
        """Stop the background sync (each syncing client makes every message cost Synapse
        more); sending still works."""
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    async def catch_up(self) -> None:
        """One sync now (for a person who stopped syncing): room keys sent to their device
        meanwhile arrive, so that what they read next decrypts."""
        await self._sync(0)

    async def close(self) -> None:
        await self.stop_syncing()
        await self.client.close()

    async def _loop(self) -> None:
        while True:
            try:
                await self._sync(5000)
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(0.5)

    async def _sync(self, timeout: int) -> None:
        resp = await self.client.sync(
            timeout=timeout, since=self._token, full_state=False, sync_filter=PERSON_FILTER
        )
        if not isinstance(resp, SyncResponse):
            await asyncio.sleep(0.5)
            return
        self._token = resp.next_batch
        for room_id, info in resp.rooms.join.items():
            bucket = self.events.setdefault(room_id, [])
            bucket.extend(e.source for e in info.timeline.events)  # decrypted when it could
        for room_id in resp.rooms.invite:
            self.invites.add(room_id)
        self._changed.set()
        await self._housekeeping()

    async def _housekeeping(self) -> None:
        """What nio's sync_forever does for a client between syncs (keys, to-device)."""
        client = self.client
        if client.outgoing_to_device_messages:
            await client.send_to_device_messages()
        if client.should_upload_keys:
            await client.keys_upload()
        if client.should_query_keys:
            await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())

    async def wait_until(
        self, check: Callable[[], Any], timeout: float = 30, what: str = "condition"
    ) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.user_id}: timed out waiting for {what}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))
            except TimeoutError:
                pass

    async def wait_for_join(self, room_id: str, user_id: str) -> None:
        """Wait until this person's client has seen ``user_id`` join the room."""
        await self.wait_until(
            lambda: any(
                e.get("type") == "m.room.member"
                and e.get("state_key") == user_id
                and (e.get("content") or {}).get("membership") == "join"
                for e in self.events.get(room_id, [])
            ),
            what=f"{user_id} to join {room_id}",
        )

    def encrypted(self, room_id: str) -> bool:
        room = self.client.rooms.get(room_id)
        return bool(room is not None and room.encrypted)

    # --- acting ----------------------------------------------------------------------------
    async def send(self, room_id: str, text: str, **extra: Any) -> str:
        content = {"msgtype": "m.text", "body": text, **extra}
        return await self.send_content(room_id, content)

    async def send_content(
        self, room_id: str, content: dict[str, Any], event_type: str = "m.room.message"
    ) -> str:
        """Send an event; in an encrypted room it goes out encrypted, as from any client."""
        if room_id not in self.client.rooms:  # nio sends only to rooms it has synced
            await self.wait_until(lambda: room_id in self.client.rooms, what=f"{room_id}")
        resp = await self.client.room_send(
            room_id, event_type, content, ignore_unverified_devices=True
        )
        assert isinstance(resp, RoomSendResponse), resp
        return str(resp.event_id)

    async def join(self, room: str) -> str:
        joined = await self._join(room)
        if self._task is not None:  # know the room (and its encryption) before using it
            await self.wait_until(lambda: joined in self.client.rooms, what=f"join {joined}")
        return joined

    async def _join(self, room: str) -> str:
        for _ in range(50):
            resp = await self.client.join(room)
            if not isinstance(resp, JoinError):
                return str(resp.room_id)
            await asyncio.sleep(0.2)
        raise AssertionError(f"{self.user_id} could not join {room}: {resp}")

    async def open_dm(self, bot_user: str, *, encrypted: bool = True) -> str:
        """A direct chat with the bot, created as Element X (and Element, once the bot has
        keys) does: ``is_direct``, ``trusted_private_chat`` and, unless ``encrypted`` is
        False, encrypted from the start."""
        resp = await self.client.room_create(
            is_direct=True,
            invite=[bot_user],
            preset=RoomPreset.trusted_private_chat,
            initial_state=[ENCRYPTION_STATE] if encrypted else [],
        )
        assert not isinstance(resp, RoomCreateError), resp
        room_id = str(resp.room_id)
        await self.wait_for_join(room_id, bot_user)
        return room_id

    async def send_file(
        self, room_id: str, data: bytes, name: str, mimetype: str, **extra: Any
    ) -> str:
        """Upload a file and post it as an ``m.file``; from an encrypted room the file is
        encrypted and the message carries a ``file`` object, as Element does."""
        content: dict[str, Any] = {
            "msgtype": "m.image" if mimetype.startswith("image/") else "m.file",
            "body": name,
            "filename": name,
            "info": {"mimetype": mimetype, "size": len(data)},
            **extra,
        }
        if room_id not in self.client.rooms:
            await self.wait_until(lambda: room_id in self.client.rooms, what=f"{room_id}")
        if self.encrypted(room_id):
            ciphertext, keys = encrypt_attachment(data)
            resp, _ = await self.client.upload(
                io.BytesIO(ciphertext),
                content_type="application/octet-stream",
                filesize=len(ciphertext),
            )
            assert isinstance(resp, UploadResponse), resp
            content["file"] = {"url": resp.content_uri, **keys, "mimetype": mimetype}
        else:
            resp, _ = await self.client.upload(
                io.BytesIO(data), content_type=mimetype, filename=name, filesize=len(data)
            )
            assert isinstance(resp, UploadResponse), resp
            content["url"] = resp.content_uri
        return await self.send_content(room_id, content)

    async def download(self, content: dict[str, Any]) -> bytes:
        """The bytes of the file a message carries (decrypted if it is a ``file`` object)."""
        file = content.get("file")
        mxc = file["url"] if isinstance(file, dict) else content["url"]
        resp = await self.client.download(mxc=mxc)
        assert not isinstance(resp, DownloadError), resp
        if not isinstance(file, dict):
            return bytes(resp.body)
        return bytes(
            decrypt_attachment(resp.body, file["key"]["k"], file["hashes"]["sha256"], file["iv"])
        )

    # --- reading ------------------------------------------------------------------------------
    async def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Event:
        """Any client-server API call as this person (JSON in, JSON out)."""
        return await self.synapse.admin_request(method, path, self.account.access_token, body)

    async def state(self, room_id: str, event_type: str, *, event: bool = False) -> Event:
        """A state event's content (or, with ``event``, the whole event) of a room."""
        path = f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/state/{event_type}/"
        return await self.api("GET", path + ("?format=event" if event else ""))

    async def history(self, room_id: str) -> list[Event]:
        """Every event of the room, oldest first, read with /messages (complete, unlike sync)."""
        events: list[Event] = []
        token: str | None = ""
        while token is not None:
            resp = await self.client.room_messages(
                room_id, start=token or "", limit=500, direction=MessageDirection.back
            )
            assert isinstance(resp, RoomMessagesResponse), resp
            events.extend(e.source for e in resp.chunk)
            if not resp.chunk or not resp.end:
                break
            token = resp.end
        events.reverse()
        return events

    def messages_from(self, sender: str, room_id: str | None = None) -> list[Event]:
        rooms = [room_id] if room_id else list(self.events)
        return [
            e
            for r in rooms
            for e in self.events.get(r, [])
            if e.get("sender") == sender and e.get("type") == "m.room.message"
        ]

    def replies_to(self, event_id: str, sender: str) -> list[Event]:
        return [
            e
            for e in self.messages_from(sender)
            if (e["content"].get("m.relates_to") or {}).get("m.in_reply_to", {}).get("event_id")
            == event_id
        ]

    async def reply_to(self, event_id: str, sender: str, timeout: float = 30) -> Event:
        found = await self.wait_until(
            lambda: self.replies_to(event_id, sender), timeout, f"a reply to {event_id}"
        )
        return dict(found[0])

    async def ask(self, room_id: str, text: str, bot: str, timeout: float = 30) -> Event:
        """Send a command and wait for the bot's reply to it."""
        event_id = await self.send(room_id, text)
        return await self.reply_to(event_id, bot, timeout)
