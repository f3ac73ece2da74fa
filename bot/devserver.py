"""A throwaway local Synapse homeserver for tests, benchmarks and the local demo.

``LocalSynapse`` generates a Synapse configuration in a data directory (once), layers an
``overrides.yaml`` over it (client listener on 127.0.0.1 only, no federation, every
``rc_*`` rate limit raised, cheap bcrypt, SQLite) and runs
``python -m synapse.app.homeserver`` as a subprocess. Everything else, the default room
version included, stays as Synapse ships it; ``room_version="11"`` pins an older default
for the tests that cover servers still on it.

Synapse runs under a tiny watchdog process that holds the read end of a pipe from us: if
this Python process dies in any way (even SIGKILL or ``os._exit``), the pipe closes and
the watchdog stops Synapse. An ``atexit`` handler also kills instances that were never
stopped.

Manual use::

    python -m bot.devserver DIR [--port PORT] [--log-level LEVEL]

starts a server whose data survives restarts, registers the admin user ``admin`` and runs
until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import hashlib
import hmac
import json as _json
import logging
import os
import re
import secrets
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import aiohttp
import yaml

__all__ = ["LocalSynapse", "SynapseRequestError", "SynapseUser", "main"]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
STOP_GRACE_SECONDS = 10.0
_OUTPUT_TAIL_BYTES = 6000
_HIGH_RATE: dict[str, float] = {"per_second": 100_000.0, "burst_count": 1_000_000}

# Runs as `python -c _WATCHDOG <synapse command...>`. It starts Synapse, forwards SIGTERM
# and SIGINT to it, exits with Synapse's exit status, and stops Synapse (SIGTERM, then
# SIGKILL after the grace period) as soon as its stdin reaches EOF, which happens when
# LocalSynapse closes the pipe or when the process owning LocalSynapse dies.
_WATCHDOG = f"""
import os, signal, subprocess, sys, threading
child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL)
def forward(signum, frame):
    child.send_signal(signum)
signal.signal(signal.SIGTERM, forward)
signal.signal(signal.SIGINT, forward)
def guard():
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    child.terminate()
    try:
        child.wait({STOP_GRACE_SECONDS})
    except subprocess.TimeoutExpired:
        child.kill()
threading.Thread(target=guard, daemon=True).start()
code = child.wait()
os._exit(code if code >= 0 else 128 - code)
"""

# Watchdog pids (each the leader of its own process group) still running, for atexit.
_RUNNING: set[int] = set()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


@atexit.register
def _kill_leftovers() -> None:
    for pgid in list(_RUNNING):
        _kill_group(pgid)
    _RUNNING.clear()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, limit: int = _OUTPUT_TAIL_BYTES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            data = fh.read()
    except OSError:
        return f"({path} is missing)"
    text = data.decode("utf-8", errors="replace")
    return text if size <= limit else "...\n" + text


@dataclass
class SynapseUser:
    """A user on the local homeserver, with a logged-in device."""

    user_id: str  # "@alice:localhost"
    localpart: str
    password: str
    access_token: str
    device_id: str
    new: bool = True
    """Registered just now (False: it existed, and ``register`` logged in instead)."""


class SynapseRequestError(RuntimeError):
    """A request to the local homeserver failed (HTTP status >= 400 or a non-object body)."""

    def __init__(self, method: str, path: str, status: int, errcode: str | None, body: str) -> None:
        super().__init__(f"{method} {path} -> HTTP {status} {errcode or ''}: {body[:500]}")
        self.method = method
        self.path = path
        self.status = status
        self.errcode = errcode
        self.body = body


class LocalSynapse:
    """A local Synapse homeserver listening on 127.0.0.1 only, for tests and demos.

    ``database`` is ``":memory:"`` (fastest, nothing survives a stop) or an SQLite file
    path; a relative path is taken relative to ``data_dir``.
    """

    server_name: str
    port: int
    base_url: str
    shared_secret: str

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        server_name: str = "localhost",
        python: str = sys.executable,
        log_level: str = "WARNING",
        database: str = ":memory:",
        default_message_limit: bool = False,
        room_version: str | None = None,
        app_services: list[str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.config_path = self.data_dir / "homeserver.yaml"
        self.overrides_path = self.data_dir / "overrides.yaml"
        self.output_path = self.data_dir / "synapse.out"
        """Synapse's stdout and stderr (and the config generation's)."""
        self.log_path = self.data_dir / "homeserver.log"
        self.server_name = server_name
        self.python = python
        self.log_level = log_level.upper()
        if not isinstance(logging.getLevelName(self.log_level), int):
            raise ValueError(f"unknown log level {log_level!r}")
        if database == ":memory:":
            self.database = database
        else:
            self.database = str(self.data_dir / Path(database).expanduser())
        self.default_message_limit = default_message_limit
        """Keep Synapse's default ``rc_message`` (0.2/s, burst 10) instead of raising it."""
        self.room_version = room_version
        """``default_room_version`` for new rooms; None keeps Synapse's own default."""
        self.app_services = {name: secrets.token_urlsafe(24) for name in app_services or ()}
        """Application services to register (name -> as_token): each owns the users
        ``@<name>-*`` and may send with ``?user_id=`` and ``?ts=`` (tests of hostile input)."""
        self._auto_port = port is None
        self.port = _free_port() if port is None else port
        self.base_url = f"http://{HOST}:{self.port}"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.shared_secret = self._load_or_create_secret()
        self._proc: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None
        self._attached = False

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def configured_port(self) -> int | None:
        """The port this data directory's server listens on (from its last start)."""
        try:
            overrides = yaml.safe_load(self.overrides_path.read_text(encoding="utf-8")) or {}
            return int(overrides["listeners"][0]["port"])
        except (OSError, KeyError, IndexError, TypeError, ValueError, yaml.YAMLError):
            return None

    async def attach(self) -> bool:
        """Talk to a server of this data directory that another process runs (the demo's):
        True when it answers on its configured port; then :meth:`register` works."""
        port = self.configured_port()
        if port is None or self._proc is not None:
            return False
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        url = f"http://{HOST}:{port}/_matrix/client/versions"
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=3)) as resp:
                answered = resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            answered = False
        if not answered:
            await session.close()
            return False
        self.port, self.base_url = port, f"http://{HOST}:{port}"
        self._session, self._attached = session, True
        return True

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, timeout: float = 60) -> None:  # noqa: ASYNC109 (the API's name)
        """Generate the config if needed, start Synapse and wait until it answers."""
        if self._proc is not None:
            raise RuntimeError("this LocalSynapse is already started")
        deadline = time.monotonic() + timeout
        await asyncio.to_thread(self._truncate_output)
        if not self.config_path.exists():
            await self._generate_config(deadline)
        attempts = 3 if self._auto_port else 1
        for attempt in range(1, attempts + 1):
            try:
                await self._start_once(deadline)
                return
            except _PortInUseError:
                if attempt == attempts:
                    raise
                self.port = _free_port()
                self.base_url = f"http://{HOST}:{self.port}"
                log.warning("port was taken, retrying Synapse on port %d", self.port)

    async def stop(self) -> None:
        """Stop Synapse: SIGTERM, then SIGKILL after 10 s. Safe to call repeatedly."""
        proc, self._proc = self._proc, None
        session, self._session = self._session, None
        self._attached = False
        try:
            if proc is not None:
                await self._terminate(proc)
        finally:
            if session is not None:
                await session.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- users and admin API --------------------------------------------------------

    async def register(
        self, localpart: str, password: str | None = None, *, admin: bool = False
    ) -> SynapseUser:
        """Register a user with the shared secret; log in instead if it already exists.

        Without ``password`` the password is derived from this data directory's shared
        secret, so registering the same localpart again (after a restart) logs in.
        An existing user keeps its admin flag whatever ``admin`` says.
        """
        if password is None:
            password = self.default_password(localpart)
        path = "/_synapse/admin/v1/register"
        nonce = str((await self._request("GET", path))["nonce"])
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(
            b"\0".join(
                (
                    nonce.encode(),
                    localpart.encode(),
                    password.encode(),
                    b"admin" if admin else b"notadmin",
                )
            )
        )
        body = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        try:
            data = await self._request("POST", path, json=body)
        except SynapseRequestError as exc:
            if exc.errcode != "M_USER_IN_USE":
                raise
            user = await self.login(localpart, password)
            user.new = False
            return user
        return self._user_from(localpart, password, data)

    async def login(self, localpart: str, password: str) -> SynapseUser:
        """Log in with a password (``m.login.password``), creating a new device."""
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": localpart},
            "password": password,
            "initial_device_display_name": "devserver",
        }
        data = await self._request("POST", "/_matrix/client/v3/login", json=body)
        return self._user_from(localpart, password, data)

    def default_password(self, localpart: str) -> str:
        """The password ``register`` uses when none is given: random per data directory."""
        digest = hmac.new(
            self.shared_secret.encode(), b"password\0" + localpart.encode(), hashlib.sha256
        ).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:32]

    async def admin_request(
        self,
        method: str,
        path: str,
        access_token: str,
        json: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Call any client or admin API path (e.g. ``/_synapse/admin/v2/users/...``)."""
        return await self._request(method, path, access_token=access_token, json=json)

    async def set_ratelimit(
        self, admin: SynapseUser, user_id: str, messages_per_second: float, burst_count: int
    ) -> None:
        """Override ``user_id``'s message rate limit.

        Synapse only accepts whole numbers here. ``messages_per_second=0`` exempts the user
        from rate limiting altogether (every limiter, not just messages). The override
        replaces this server's (very high) ``rc_message`` for that user.
        """
        if messages_per_second < 0 or messages_per_second != int(messages_per_second):
            raise ValueError(
                "Synapse accepts only whole, non-negative messages_per_second, "
                f"got {messages_per_second!r}"
            )
        if burst_count < 0:
            raise ValueError(f"burst_count must not be negative, got {burst_count!r}")
        await self.admin_request(
            "POST",
            self._ratelimit_path(user_id),
            admin.access_token,
            {"messages_per_second": int(messages_per_second), "burst_count": int(burst_count)},
        )

    async def clear_ratelimit_override(self, admin: SynapseUser, user_id: str) -> None:
        """Remove ``user_id``'s rate limit override."""
        await self.admin_request("DELETE", self._ratelimit_path(user_id), admin.access_token)

    # -- internals -------------------------------------------------------------------

    @staticmethod
    def _ratelimit_path(user_id: str) -> str:
        return f"/_synapse/admin/v1/users/{quote(user_id, safe='')}/override_ratelimit"

    @staticmethod
    def _user_from(localpart: str, password: str, data: dict[str, Any]) -> SynapseUser:
        return SynapseUser(
            user_id=str(data["user_id"]),
            localpart=localpart,
            password=password,
            access_token=str(data["access_token"]),
            device_id=str(data["device_id"]),
        )

    async def _request(
        self,
        method: str,
        path: str,
        *,
        access_token: str | None = None,
        json: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if self._session is None or (self._proc is None and not self._attached):
            raise RuntimeError("LocalSynapse is not running")
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
        async with self._session.request(
            method, self.base_url + path, json=json, headers=headers
        ) as resp:
            text = await resp.text()
            status = resp.status
        data: Any
        try:
            data = _json.loads(text) if text.strip() else {}
        except ValueError:
            data = None
        if status >= 400 or not isinstance(data, dict):
            errcode = data.get("errcode") if isinstance(data, dict) else None
            raise SynapseRequestError(method, path, status, errcode, text)
        return data

    def _load_or_create_secret(self) -> str:
        path = self.data_dir / "registration_shared_secret"
        if path.exists():
            secret = path.read_text(encoding="utf-8").strip()
            if secret:
                return secret
        secret = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secret + "\n")
        return secret

    def _truncate_output(self) -> None:
        self.output_path.write_bytes(b"")

    def _open_output(self) -> int:
        return os.open(self.output_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _failure(self, what: str) -> RuntimeError:
        return RuntimeError(
            f"{what}\n--- tail of {self.output_path} ---\n{_tail(self.output_path)}"
            f"\n--- tail of {self.log_path} ---\n{_tail(self.log_path, 3000)}"
        )

    async def _spawn(
        self, *args: str, stdin: int, watchdog: bool = False
    ) -> asyncio.subprocess.Process:
        """Run Synapse's homeserver module with ``args`` in its own process group, output
        to :attr:`output_path`; with ``watchdog``, under the watchdog that ends it when this
        process goes away."""
        prefix = (self.python, "-c", _WATCHDOG) if watchdog else ()
        out = self._open_output()
        try:
            return await asyncio.create_subprocess_exec(
                *prefix,
                self.python,
                "-m",
                "synapse.app.homeserver",
                *args,
                stdin=stdin,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
            )
        finally:
            os.close(out)

    async def _generate_config(self, deadline: float) -> None:
        proc = await self._spawn(
            "--server-name",
            self.server_name,
            "--config-path",
            str(self.config_path),
            "--generate-config",
            "--report-stats=no",
            "--data-directory",
            str(self.data_dir),
            stdin=asyncio.subprocess.DEVNULL,
        )
        try:
            code = await asyncio.wait_for(proc.wait(), max(0.1, deadline - time.monotonic()))
        except BaseException:
            _kill_group(proc.pid)
            await proc.wait()
            self.config_path.unlink(missing_ok=True)
            raise
        if code != 0 or not self.config_path.exists():
            self.config_path.unlink(missing_ok=True)
            raise self._failure(f"Synapse config generation failed with exit code {code}")

    def _write_config(self) -> None:
        generated = yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}
        self._align_generated_secret(generated)
        log_config = Path(
            generated.get("log_config") or self.data_dir / f"{self.server_name}.log.config"
        )
        self._write_log_config(log_config)
        overrides = self._overrides(log_config)
        self.overrides_path.write_text(
            "# Written by bot.devserver on every start; layered over homeserver.yaml.\n"
            + yaml.safe_dump(overrides, sort_keys=False),
            encoding="utf-8",
        )

    def _align_generated_secret(self, generated: dict[str, Any]) -> None:
        """Put this directory's registration secret into the generated homeserver.yaml too
        (the overrides win anyway), so that Synapse's own ``register_new_matrix_user -c
        homeserver.yaml`` works instead of failing with "HMAC incorrect"."""
        if generated.get("registration_shared_secret") == self.shared_secret:
            return
        text = self.config_path.read_text(encoding="utf-8")
        line = f"registration_shared_secret: {_json.dumps(self.shared_secret)}"
        if re.search(r"^registration_shared_secret:.*$", text, flags=re.MULTILINE):
            text = re.sub(
                r"^registration_shared_secret:.*$",
                lambda _: line,
                text,
                count=1,
                flags=re.MULTILINE,
            )
        else:
            text = text.rstrip("\n") + "\n" + line + "\n"
        self.config_path.write_text(text, encoding="utf-8")

    def _write_log_config(self, path: Path) -> None:
        config: dict[str, Any] = {}
        if path.exists():
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                config = loaded
        config.setdefault("version", 1)
        formatters = config.setdefault("formatters", {})
        formatters.setdefault(
            "precise",
            {"format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(message)s"},
        )
        handlers = config.setdefault("handlers", {})
        handlers["file"] = {
            **handlers.get("file", {}),
            "class": "logging.handlers.TimedRotatingFileHandler",
            "formatter": handlers.get("file", {}).get("formatter", "precise"),
            "filename": str(self.log_path),
            "when": "midnight",
            "backupCount": 3,
            "encoding": "utf8",
        }
        root_handler = "buffer" if handlers.get("buffer", {}).get("target") == "file" else "file"
        level = logging.getLevelName(self.log_level)
        numeric_level = level if isinstance(level, int) else logging.WARNING
        for logger in (config.get("loggers") or {}).values():
            current = logging.getLevelName(str(logger.get("level", "NOTSET")).upper())
            if not isinstance(current, int) or current < numeric_level:
                logger["level"] = self.log_level
        config["root"] = {"level": self.log_level, "handlers": [root_handler]}
        config["disable_existing_loggers"] = False
        path.write_text(
            "# Edited by bot.devserver on every start.\n" + yaml.safe_dump(config, sort_keys=False),
            encoding="utf-8",
        )

    def _overrides(self, log_config: Path) -> dict[str, Any]:
        def high() -> dict[str, float]:
            return dict(_HIGH_RATE)

        overrides: dict[str, Any] = {
            "server_name": self.server_name,
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": [HOST],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": self.database}},
            "log_config": str(log_config),
            "media_store_path": str(self.data_dir / "media_store"),
            "max_upload_size": "50M",
            "registration_shared_secret": self.shared_secret,
            "enable_registration": False,
            "report_stats": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "presence": {"enabled": False},
            "url_preview_enabled": False,
            "bcrypt_rounds": 4,
            "rc_message": high(),
            "rc_registration": high(),
            "rc_registration_token_validity": high(),
            "rc_login": {"address": high(), "account": high(), "failed_attempts": high()},
            "rc_admin_redaction": high(),
            "rc_joins": {"local": high(), "remote": high()},
            "rc_joins_per_room": high(),
            "rc_key_requests": high(),
            "rc_3pid_validation": high(),
            "rc_invites": {"per_room": high(), "per_user": high(), "per_issuer": high()},
            "rc_third_party_invite": high(),
            "rc_media_create": high(),
            "rc_presence": {"per_user": high()},
            "rc_delayed_event_mgmt": high(),
            "rc_room_creation": high(),
            "rc_reports": high(),
            "rc_user_directory": high(),
            "rc_profile": high(),
        }
        if self.default_message_limit:
            del overrides["rc_message"]
        if self.room_version is not None:
            overrides["default_room_version"] = self.room_version
        if self.app_services:
            overrides["app_service_config_files"] = self._write_app_services()
        return overrides

    def _write_app_services(self) -> list[str]:
        files = []
        for name, token in self.app_services.items():
            path = self.data_dir / f"appservice-{name}.yaml"
            registration = {
                "id": name,
                "url": None,  # nothing is pushed to it; it only sends
                "as_token": token,
                "hs_token": secrets.token_urlsafe(24),
                "sender_localpart": f"{name}-bridge",
                "rate_limited": False,
                "namespaces": {
                    "users": [{"exclusive": True, "regex": f"@{name}-.*"}],
                    "aliases": [],
                    "rooms": [],
                },
            }
            path.write_text(yaml.safe_dump(registration, sort_keys=False), encoding="utf-8")
            files.append(str(path))
        return files

    async def _start_once(self, deadline: float) -> None:
        await asyncio.to_thread(self._write_config)
        proc = await self._spawn(
            "-c",
            str(self.config_path),
            "-c",
            str(self.overrides_path),
            stdin=asyncio.subprocess.PIPE,
            watchdog=True,
        )
        _RUNNING.add(proc.pid)
        self._proc = proc
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        try:
            await self._wait_ready(proc, self._session, deadline)
        except BaseException:
            await self.stop()
            raise

    async def _wait_ready(
        self, proc: asyncio.subprocess.Process, session: aiohttp.ClientSession, deadline: float
    ) -> None:
        url = f"{self.base_url}/_matrix/client/versions"
        while True:
            if proc.returncode is not None:
                break
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200 and proc.returncode is None:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.monotonic() >= deadline:
                raise self._failure(
                    f"Synapse did not answer on {self.base_url} in time (data in {self.data_dir})"
                )
            await asyncio.sleep(0.05)
        output = await asyncio.to_thread(_tail, self.output_path)
        failure = self._failure(f"Synapse exited early with exit code {proc.returncode}")
        if "Address already in use" in output:
            raise _PortInUseError(f"port {self.port} on {HOST} is already in use\n{failure}")
        raise failure

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        try:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), STOP_GRACE_SECONDS)
                except TimeoutError:
                    log.warning(
                        "Synapse did not stop within %.0f s, killing it", STOP_GRACE_SECONDS
                    )
            # Synapse should be gone with its watchdog; make sure of it either way.
            _kill_group(proc.pid)
            await proc.wait()
        except BaseException:
            _kill_group(proc.pid)
            raise
        finally:
            if proc.stdin is not None:
                proc.stdin.close()
            _RUNNING.discard(proc.pid)


class _PortInUseError(RuntimeError):
    pass


async def _serve(args: argparse.Namespace) -> None:
    server = LocalSynapse(
        Path(args.data_dir),
        port=args.port,
        server_name=args.server_name,
        log_level=args.log_level,
        database=args.database,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    started = time.monotonic()
    async with server:
        admin = await server.register("admin", admin=True)
        print(f"Synapse is up on {server.base_url} ({time.monotonic() - started:.1f} s)")
        print(f"server name:  {server.server_name}")
        print(f"admin user:   {admin.user_id}")
        print(f"password:     {admin.password}")
        print(f"access token: {admin.access_token}")
        print(f"data:         {server.data_dir} (log: {server.log_path})")
        print("Press Ctrl-C to stop.", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot.devserver", description="Run a local Synapse for manual testing."
    )
    parser.add_argument("data_dir", help="directory for config, database, media and logs")
    parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (free one)")
    parser.add_argument("--server-name", default="localhost")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument(
        "--database",
        default="homeserver.db",
        help="SQLite file (relative to DATA_DIR) or :memory: (default: homeserver.db)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
