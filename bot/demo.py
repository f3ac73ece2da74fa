"""``bbwt-bot demo``: a local Synapse, the bot and example people, ready to try in a client."""

from __future__ import annotations

import logging
import re
import secrets
import sys
from pathlib import Path

from pydantic import SecretStr

from bot.app import BotApp
from bot.devserver import LocalSynapse, SynapseRequestError, SynapseUser
from commands.claims.rates import month_of, parse_rates, previous_month
from config import load_config
from config.models import Settings
from storage import claims as claims_store
from storage import repo

log = logging.getLogger(__name__)
SHIPPED_CONFIG = Path(__file__).resolve().parent.parent / "bbwt_bot.toml"
DEMO_RATES = Path(__file__).resolve().parent / "demo_rates.json"
"""Sample monthly rates in the InforEuro format, so that every currency example of the help
works in the demo without the internet (the demo fetches nothing)."""

# (localpart, organisation, country, authority type, CoP they belong to)
EXAMPLE_MEMBERS = [
    ("anna", "City of Oslo", "NO", "local-authority", "HDEV"),
    ("ben", "Région Île-de-France", "FR", "regional-authority", "SOLAR"),
]


def demo_store_key(data: Path) -> SecretStr:
    """The demo bot's store key, made once and kept in the demo folder (a new key would
    make the bot's stored keys unreadable)."""
    path = data / "store.key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32), encoding="utf-8")
        path.chmod(0o600)
    return SecretStr(path.read_text(encoding="utf-8").strip())


def demo_settings(
    base: Settings, synapse: LocalSynapse, bot: SynapseUser, admin: str, data: Path
) -> Settings:
    matrix = base.matrix.model_copy(
        update={
            "homeserver": synapse.base_url,
            "user_id": bot.user_id,
            "password": SecretStr(bot.password),
            "access_token": None,
            "store_key": demo_store_key(data),
        }
    )
    return base.model_copy(
        update={
            "matrix": matrix,
            "database": base.database.model_copy(
                update={"url": f"sqlite+aiosqlite:///{data / 'bbwt_bot.db'}"}
            ),
            "secretariat": base.secretariat.model_copy(update={"admins": [admin]}),
            "claims": base.claims.model_copy(update={"rates_url": ""}),
        }
    )


async def seed_rates(running: BotApp) -> None:
    """The sample rates, as this month's and last month's InforEuro rates."""
    rates = parse_rates(DEMO_RATES.read_text(encoding="utf-8"))
    now = running.clock()
    this_month = month_of(now.date())
    async with running.db.session() as s:
        for month in (this_month, previous_month(this_month)):
            await claims_store.save_rates(
                s, month, rates, source=f"demo sample ({DEMO_RATES.name})", now=now
            )


def prepare(data: Path) -> tuple[Path, Settings]:
    data = data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    return data, load_config(SHIPPED_CONFIG if SHIPPED_CONFIG.exists() else None)


async def demo(data: Path, port: int) -> int:
    data, base = prepare(data)
    synapse = LocalSynapse(data / "synapse", port=port, database="homeserver.db")
    print(f"Starting Synapse on {synapse.base_url} (data in {data}) …", flush=True)
    await synapse.start()
    try:
        bot = await synapse.register("bbwt")
        admin = await synapse.register("secretariat", admin=True)
        members = {name: await synapse.register(name) for name, *_ in EXAMPLE_MEMBERS}
        settings = demo_settings(base, synapse, bot, admin.user_id, data)
        app = BotApp(settings)

        async def seed(running: BotApp) -> None:
            async with running.db.session() as s:
                for name, org, country, kind, cop in EXAMPLE_MEMBERS:
                    await repo.seed_member(
                        s,
                        user_id=members[name].user_id,
                        org=org,
                        country=country,
                        authority_type=kind,
                        cop_code=cop,
                        now=running.clock(),
                    )
            await seed_rates(running)
            if running.sender is not None:
                running.sender.wake()
            print_instructions(synapse, admin, list(members.values()), settings)

        await app.run(on_started=seed)
    finally:
        await synapse.stop()
    return 0


def print_instructions(
    synapse: LocalSynapse, admin: SynapseUser, members: list[SynapseUser], settings: Settings
) -> None:
    prefix = settings.matrix.command_prefix
    lines = [
        "",
        "bbwt-bot demo is running. Log in with any Matrix client (Element, for example:",
        f"https://app.element.io → Sign in → Edit homeserver → {synapse.base_url}):",
        "",
        f"  {'Secretariat admin':18} {admin.localpart:12} password {admin.password}",
    ]
    for member, (_, org, _, _, cop) in zip(members, EXAMPLE_MEMBERS, strict=True):
        lines.append(
            f"  {cop + ' member':18} {member.localpart:12} password {member.password}  ({org})"
        )
    lines += [
        "",
        f"The bot is {settings.matrix.user_id}. "
        f"Start a direct chat with it and send:  {prefix}help",
        f"Health: http://{settings.http.host}:{settings.http.port}/healthz · "
        f"metrics: http://{settings.http.host}:{settings.http.port}/metrics",
        "To add a person, run in another terminal:  ./dev demo adduser NAME",
        "Press Ctrl-C to stop Synapse and the bot. Data stays in the demo folder.",
        "",
    ]
    print("\n".join(lines), flush=True)


LOCALPART = re.compile(r"^[a-z0-9._=/+-]{1,64}$")


async def adduser(synapse_dir: Path, name: str, *, port: int = 8008) -> int:
    """``bbwt-bot demo adduser NAME``: a new account on the demo's Synapse, registered with
    the demo's shared secret (running or not), and how to log in with it."""
    localpart = name.strip().lstrip("@").split(":", 1)[0].lower()
    if not LOCALPART.match(localpart):
        print(
            f"{name!r} cannot be a Matrix user name: use letters, digits and . _ - = / + "
            "only (for example: maria or maria.rossi).",
            file=sys.stderr,
        )
        return 2
    if not (synapse_dir / "homeserver.yaml").exists():
        print(
            f"There is no demo in {synapse_dir.parent} yet: start it once with ./dev demo, "
            "then add people (in another terminal, while it runs, or after).",
            file=sys.stderr,
        )
        return 1
    synapse = LocalSynapse(synapse_dir, port=port, database="homeserver.db")
    if (last := synapse.configured_port()) is not None:  # the port the demo was started on
        synapse = LocalSynapse(synapse_dir, port=last, database="homeserver.db")
    started_here = False
    if not await synapse.attach():
        print(f"The demo is not running; starting its Synapse for a moment on {synapse.base_url} …")
        await synapse.start()
        started_here = True
    try:
        try:
            user = await synapse.register(localpart)
        except SynapseRequestError as exc:
            if exc.errcode != "M_FORBIDDEN":
                raise
            print(
                f"{localpart} already exists on the demo with a password I do not know "
                "(it was not made with demo adduser). Pick another name.",
                file=sys.stderr,
            )
            return 1
    finally:
        await synapse.stop()
    bot = f"@bbwt:{synapse.server_name}"
    what = "is added to the demo" if user.new else "is already in the demo"
    lines = [
        f"{user.user_id} {what}.",
        "",
        f"  homeserver  {synapse.base_url}",
        f"  user        {user.localpart}",
        f"  password    {user.password}",
        "",
        "Log in with any Matrix client (Element: https://app.element.io → Sign in → Edit "
        f"homeserver → {synapse.base_url}),",
        f"start a direct chat with {bot} and send !help; to apply to a CoP, send !join HDEV.",
    ]
    if started_here:
        lines.append("Start the demo (./dev demo) so that the bot answers.")
    print("\n".join(lines), flush=True)
    return 0
