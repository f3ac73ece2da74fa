"""Wiring: database, leader lease, Matrix session and crypto, rooms, sync loop, workers,
sender and HTTP server.

A process first serves ``/healthz`` on standby and waits for the leader lease
(``bot.lease``); only the holder logs in, loads the crypto store and starts everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from nio import JoinError, RoomGetEventResponse, RoomLeaveError

from bot.crypto.cross_signing import SECRET_NAME, CrossSigner
from bot.crypto.keys import StoreKeys
from bot.crypto.store import DbCryptoStore
from bot.crypto.undecryptable import Undecryptable
from bot.http import make_app, start_http
from bot.lease import Leadership
from bot.matrix import BotClient, MatrixError, login, make_client, setup_rooms
from bot.metrics import Metrics
from bot.processor import Processor
from bot.rooms import MemberCache
from bot.sender import Sender
from bot.sync import Classifier, Syncer
from commands import build_registry, families
from commands.services import Services
from config.models import Settings
from storage import Database, repo
from storage import crypto as stored

log = logging.getLogger(__name__)


def freeze_long_lived() -> None:
    """Take what is loaded by now (modules, settings, the client and its keys: about 120,000
    objects that live as long as the process) out of the cyclic garbage collector's sight,
    after one last collection. A full collection then walks only what came later: without
    this, the full collections a busy bot makes cost about a tenth of its time per command
    (``bench/dispatch.py``)."""
    gc.collect()
    gc.freeze()


class BotApp:
    """One running bot. ``await BotApp(settings).run()`` returns when it has stopped cleanly."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.clock = clock
        """The one source of "now" for everything the bot does (tests may give another)."""
        self.metrics = Metrics()
        self.db = Database(settings.database.url)
        store_key = settings.matrix.store_key
        if store_key is None:
            raise MatrixError(
                "BBWT_MATRIX__STORE_KEY is not set: the bot encrypts its keys at rest with "
                "it (make one with: openssl rand -base64 32, and keep it with the password)"
            )
        self.keys = StoreKeys(store_key)
        self.client: BotClient = make_client(settings, self.keys.pickle_key)
        self.leadership = Leadership(self.db, name=settings.matrix.user_id, clock=self.clock)
        self.crypto: DbCryptoStore | None = None
        self.undecryptable: Undecryptable | None = None
        self.exit_code = 0
        self.registry = build_registry(settings.matrix.command_prefix)
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.stop_requested = asyncio.Event()
        self.http_port: int | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self.syncer: Syncer | None = None
        self.processor: Processor | None = None
        self.sender: Sender | None = None
        self.services: Services | None = None

    def request_stop(self) -> None:
        self.stop_requested.set()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def prepare(self) -> None:
        """What a standby does too: the schema, and a health page saying it waits."""
        before, after = await self.db.upgrade()
        if before != after:
            log.info("database schema upgraded from %s to %s", before, after)
        self.metrics.active.set(0)
        standby = make_app(
            db=self.db,
            metrics=self.metrics,
            last_sync=lambda: 0.0,
            max_sync_age=0,
            clock=self.clock,
            role=lambda: self.leadership.role,
        )
        self._runner, self.http_port = await start_http(
            standby, self.settings.http.host, self.settings.http.port
        )

    async def start_crypto(self) -> None:
        """Load this device's crypto state, publish its keys and cross-sign it."""
        client, settings = self.client, self.settings
        store = DbCryptoStore(
            self.db,
            client.user_id,
            client.device_id,
            self.keys.pickle_key,
            guard=self.leadership.guard,
            clock=self.clock,
        )
        await store.load()
        fresh = not store.has_account
        store.install(client)
        client.before_request = store.flush
        self.crypto = store
        if client.should_upload_keys:
            await client.keys_upload()  # before anyone opens an encrypted chat with the bot
        log.info(
            "%s the crypto identity of device %s",
            "created" if fresh else "loaded",
            client.device_id,
        )

        async def load_secret() -> object:
            async with self.db.read() as s:
                sealed = await stored.get_secret(s, client.user_id, SECRET_NAME)
            return self.keys.unseal(sealed) if sealed else None

        async def save_secret(value: dict[str, str]) -> None:
            async with self.db.session() as s:
                await self.leadership.guard(s)
                await stored.put_secret(
                    s, client.user_id, SECRET_NAME, self.keys.seal(value), now=self.clock()
                )

        password = settings.matrix.password
        signer = CrossSigner(
            client,
            password=password.get_secret_value() if password else None,
            load_secret=load_secret,
            save_secret=save_secret,
        )
        report = await signer.ensure()
        log.info(
            "cross-signing: identity %s%s%s",
            report.master[:8],
            ", new keys published" if report.uploaded else "",
            f", signed {len(report.signed)} key(s)" if report.signed else "",
        )

    async def start(self) -> None:
        """Everything the active process does, once it holds the lease."""
        settings = self.settings
        await login(self.client, settings, self.db, self.clock, self.keys)
        await self.start_crypto()
        cop_rooms, management = await setup_rooms(self.client, settings, self.db, self.clock)

        members = MemberCache(self.client, self.db, self.clock)
        self.sender = Sender(
            self.client,
            self.db,
            self.metrics,
            retries=settings.matrix.send_retries,
            clock=self.clock,
            members=members,
            encrypt_direct_rooms=settings.matrix.encrypt_rooms,
            shared_rooms=frozenset([*cop_rooms, management]),
        )
        self.undecryptable = Undecryptable(
            self.client,
            self.db,
            self.metrics,
            wait=settings.matrix.key_wait,
            clock=self.clock,
            on_queued=self.sender.wake,
        )
        classifier = Classifier(
            settings.matrix.user_id,
            settings.matrix.command_prefix,
            self.registry.hooks,
            listening=self.registry.listening,
            shared_rooms=frozenset([*cop_rooms, management]),
        )
        self.processor = Processor(
            db=self.db,
            settings=settings,
            registry=self.registry,
            client=self.client,
            classifier=classifier,
            metrics=self.metrics,
            cop_rooms=cop_rooms,
            management_room=management,
            on_committed=self.sender.wake,
            clock=self.clock,
            members=members,
        )
        self.syncer = Syncer(
            self.client,
            self.db,
            classifier,
            self.metrics,
            timeout_ms=int(settings.matrix.sync_timeout.total_seconds() * 1000),
            on_stored=self.processor.take,
            on_invite=self._on_invite,
            clock=self.clock,
            crypto=self.crypto,
            guard=self.leadership.guard,
            on_parked=self.undecryptable.wake,
            settle=self._settle,
        )
        await self.syncer.load_token()
        self.sender.caught_up = self.syncer.first_sync_done
        self.sender.started = self.syncer.first_response

        syncer = self.syncer
        app = make_app(
            db=self.db,
            metrics=self.metrics,
            last_sync=lambda: syncer.last_ok,
            max_sync_age=settings.matrix.sync_timeout.total_seconds() + 60,
            clock=self.clock,
            role=lambda: self.leadership.role,
        )
        self.services = Services(
            settings=settings,
            db=self.db,
            registry=self.registry,
            scheduler=self.scheduler,
            http=app,
            clock=self.clock,
            wake_sender=self.sender.wake,
            cop_rooms=cop_rooms,
            management_room=management,
            bot_user=settings.matrix.user_id,
            fetch_event=self._fetch_event,
        )
        self.processor.services = self.services
        for family in families():
            setup = getattr(family, "setup", None)
            if setup is not None:
                await setup(self.services)
        if self._runner is not None:  # the standby page makes way for the full one
            await self._runner.cleanup()
        port = self.http_port if self.http_port is not None else settings.http.port
        self._runner, self.http_port = await start_http(app, settings.http.host, port)
        self.metrics.active.set(1)
        self.leadership.serving = True
        self.scheduler.start()
        freeze_long_lived()
        self._spawn(self.sender.run(), "sender")
        self._spawn(self.processor.run(), "processor")
        self._spawn(self.syncer.run(), "sync")
        self._spawn(self.undecryptable.run(), "undecryptable")
        self._spawn(self.leadership.watch(), "lease")
        self.processor.wake()  # events left pending by a previous run
        self.sender.wake()
        log.info(
            "bbwt-bot is running as %s; HTTP on %s:%s",
            settings.matrix.user_id,
            settings.http.host,
            self.http_port,
        )

    async def run(self, on_started: Callable[[BotApp], Awaitable[None]] | None = None) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        try:
            await self.prepare()
            if await self.leadership.acquire(self.stop_requested):
                if self.leadership.waited:
                    # A newer version may have upgraded the schema meanwhile (a migration
                    # may drop a column this code reads): checked again before acting, and
                    # refused as at a start (DatabaseTooNew; the lease is let go).
                    await self.db.upgrade()
                await self.start()
                if on_started is not None:
                    await on_started(self)
                await self._until_stopped()
            log.info("stopping: finishing work in hand")
        finally:
            await self.shutdown()

    async def _settle(self, at_most: float) -> None:
        """Wait until the commands stored so far are handled and their answers sent,
        ``at_most`` seconds at most (the sync loop waits so before its next sync: see
        ``Syncer.run``)."""
        processor, sender = self.processor, self.sender
        if processor is None or sender is None:  # pragma: no cover - both made in start()
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + at_most
        with contextlib.suppress(TimeoutError):
            # The workers first: a command's answer is queued only when its transaction
            # commits, and until then the sender has nothing to send.
            await asyncio.wait_for(processor.settled(), at_most)
        left = deadline - loop.time()
        if left > 0:
            await sender.settle(left)

    async def _until_stopped(self) -> None:
        lost = asyncio.create_task(self.leadership.lost.wait())
        stop = asyncio.create_task(self.stop_requested.wait())
        await asyncio.wait({lost, stop}, return_when=asyncio.FIRST_COMPLETED)
        for task in (lost, stop):
            task.cancel()
        if self.leadership.lost.is_set():
            log.error("another process holds the lease now: stepping down")
            self.exit_code = 5

    async def shutdown(self) -> None:
        if self.syncer is not None:
            self.syncer.stopping = True
        for task in list(self._tasks):
            if task.get_name() == "sync":
                task.cancel()
        if self.processor is not None:
            await self.processor.drain(grace=20)
        if self.undecryptable is not None:
            self.undecryptable.stopping = True
        if self.sender is not None:
            self.sender.stopping = True
            for task in list(self._tasks):
                if task.get_name() == "sender":
                    task.cancel()
            if not self.leadership.lost.is_set():  # the new holder sends what is left
                left = await self.sender.flush(grace=15)
                if left:
                    log.warning(
                        "%d message(s) left in the outbox; they go out on the next start", left
                    )
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._runner is not None:
            await self._runner.cleanup()
        if self.crypto is not None and not self.leadership.lost.is_set():
            try:
                await self.crypto.flush()
            except Exception:
                log.exception("could not store the last crypto changes")
        await self.client.close()
        await self.leadership.release()
        await self.db.dispose()
        log.info("stopped")

    async def _fetch_event(self, room_id: str, event_id: str) -> dict[str, Any] | None:
        """One event read from the homeserver (see ``Services.fetch_event``)."""
        try:
            resp = await asyncio.wait_for(self.client.room_get_event(room_id, event_id), 15)
        except Exception:
            log.warning("could not fetch %s in %s", event_id, room_id, exc_info=True)
            return None
        if not isinstance(resp, RoomGetEventResponse):
            log.info("could not fetch %s in %s: %s", event_id, room_id, resp)
            return None
        return dict(resp.event.source)

    # --- invites ---------------------------------------------------------------------------
    def _on_invite(self, room_id: str, inviter: str, direct: bool) -> None:
        self._spawn(self._answer_invite(room_id, inviter, direct), f"invite {room_id}")

    async def _answer_invite(self, room_id: str, inviter: str, direct: bool) -> None:
        """Accept direct chats (and anything an admin invites the bot to); decline the rest."""
        if direct or inviter in self.settings.secretariat.admins:
            resp = await self.client.join(room_id)
            if isinstance(resp, JoinError):
                log.warning("could not accept the invite to %s: %s", room_id, resp.message)
                return
            if direct:
                async with self.db.session() as s:
                    if await repo.get_direct_room(s, inviter) is None:
                        await repo.set_direct_room(s, inviter, room_id, now=self.clock())
            log.info("accepted the invite of %s to %s", inviter, room_id)
        else:
            resp2 = await self.client.room_leave(room_id)
            if isinstance(resp2, RoomLeaveError):
                log.warning("could not decline the invite to %s: %s", room_id, resp2.message)
            log.info("declined the invite of %s to %s (not a direct chat)", inviter, room_id)
