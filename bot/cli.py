"""The ``bbwt-bot`` command line: run, check-config, db upgrade, demo, demo adduser."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from bot import loop as event_loop
from commands.privacy.notice import span
from config import ConfigError, Settings, load_config
from storage import Database, DatabaseTooNew


def _load(path: str | None) -> Settings:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None


def _summary(settings: Settings, source: str) -> str:
    m = settings.matrix
    login = "access token" if m.access_token else ("password" if m.password else "NOT SET")
    lines = [
        f"Configuration {source} is valid.",
        f"  Matrix: {m.user_id} on {m.homeserver} (login: {login}), prefix {m.command_prefix!r}",
        f"  Encryption: on; store key {'set' if m.store_key else 'NOT SET'}; rooms the bot "
        f"creates are {'encrypted' if m.encrypt_rooms else 'not encrypted'}",
        f"  Database: {settings.database.url.split('@')[-1]}",
        f"  HTTP: {settings.http.host}:{settings.http.port}",
        f"  Event loop: {event_loop.chosen(settings.process.event_loop)}",
        f"  Admins: {', '.join(settings.secretariat.admins) or 'none'}",
        f"  Time zone: {settings.secretariat.timezone}",
        f"  CoPs ({len(settings.cops)}):",
    ]
    for cop in settings.cops:
        room = cop.room or f"#{m.alias_prefix}-{cop.code.lower()}:{m.server_name} (created)"
        mods = ", ".join(cop.moderators) or "no moderators"
        lines.append(f"    {cop.code:7} {cop.name} — {room}; {mods}")
    p = settings.privacy
    lines += [
        "  Retention (deleted or erased after):",
        f"    commands received (their text) {span(p.inbound_retention)}; "
        f"messages sent (their copy) {span(p.outbox_retention)}",
        f"    audit log {span(p.audit_retention)}; people who left {span(p.member_retention)}; "
        f"settled travel claims {span(settings.claims.retention)}",
        "  Pseudonyms of erased people: "
        + ("key from the environment" if p.pseudonym_key else "key kept in the database"),
    ]
    if login == "NOT SET":
        lines.append("  Warning: set BBWT_MATRIX__PASSWORD or BBWT_MATRIX__ACCESS_TOKEN to run.")
    if p.pseudonym_key is None:
        lines.append(
            "  Warning: set BBWT_PRIVACY__PSEUDONYM_KEY (e.g. openssl rand -hex 32), so that "
            "a copy of the database alone cannot tell whose the kept claims were."
        )
    if m.store_key is None:
        lines.append(
            "  Warning: set BBWT_MATRIX__STORE_KEY to run: the bot encrypts its keys at rest "
            "with it (make one with: openssl rand -base64 32, and never change it)."
        )
    return "\n".join(lines)


async def _upgrade(settings: Settings) -> int:
    db = Database(settings.database.url)
    try:
        before, after = await db.upgrade()
    except DatabaseTooNew as exc:
        print(f"Refusing to touch the database: {exc}", file=sys.stderr)
        return 3
    finally:
        await db.dispose()
    shown_before = ", ".join(before) or "empty"
    print(f"Database schema: {shown_before} -> {', '.join(after)}")
    return 0


async def _run(settings: Settings) -> int:
    from bot.app import BotApp
    from bot.crypto.keys import StoreKeyError
    from bot.matrix import MatrixError

    try:
        app = BotApp(settings)
        await app.run()
    except DatabaseTooNew as exc:
        logging.getLogger("bbwt").error("%s", exc)
        return 3
    except (MatrixError, StoreKeyError) as exc:
        logging.getLogger("bbwt").error("%s", exc)
        return 4
    return app.exit_code


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bbwt-bot", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the bot")
    run.add_argument("--config", default=None, help="path of bbwt_bot.toml")
    check = sub.add_parser("check-config", help="validate the configuration and summarise it")
    check.add_argument("path", nargs="?", default=None, help="path of bbwt_bot.toml")
    check.add_argument("--config", default=None, help="the same, as for run and db")
    db = sub.add_parser("db", help="database maintenance")
    db.add_argument("action", choices=["upgrade"])
    db.add_argument("--config", default=None)
    demo_p = sub.add_parser("demo", help="local Synapse + bot with example users")
    demo_p.add_argument("--data", default="demo-data", help="folder for Synapse and the bot")
    demo_p.add_argument("--port", type=int, default=8008, help="Synapse port on 127.0.0.1")
    demo_sub = demo_p.add_subparsers(dest="demo_cmd", metavar="[adduser NAME]")
    add_p = demo_sub.add_parser(
        "adduser",
        help="add a person to the demo's Synapse and print their password",
        description="Register NAME on the demo's Synapse with its shared secret (whether "
        "the demo runs or not) and print how to log in.",
    )
    add_p.add_argument("name", help="user name, e.g. maria")
    add_p.add_argument("--data", default=argparse.SUPPRESS, help="the demo's folder")
    add_p.add_argument("--port", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("nio", "aiohttp.access", "apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # nio warns about every "alias not found" answer, which the bot expects on first start.
    logging.getLogger("nio.responses").setLevel(logging.ERROR)

    if args.cmd == "check-config":
        path = args.path or args.config
        settings = _load(path)
        print(_summary(settings, path or "bbwt_bot.toml"))
        raise SystemExit(0)
    if args.cmd == "db":
        raise SystemExit(asyncio.run(_upgrade(_load(args.config))))
    if args.cmd == "run":
        settings = _load(args.config)
        raise SystemExit(event_loop.run(_run(settings), settings.process.event_loop))
    if args.cmd == "demo" and args.demo_cmd == "adduser":
        from bot.demo import adduser

        synapse_dir = Path(args.data).resolve() / "synapse"
        raise SystemExit(asyncio.run(adduser(synapse_dir, args.name, port=args.port)))
    if args.cmd == "demo":
        from bot.demo import demo

        raise SystemExit(event_loop.run(demo(Path(args.data), args.port)))


if __name__ == "__main__":
    main()
