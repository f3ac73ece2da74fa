"""A travel claim's whole life through a real Synapse with the bot as a real process."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.e2e.claims_support import (
    ask_replying,
    bodies,
    download,
    move_event_into_the_past,
    upload,
    wait_for_text,
)
from tests.e2e.conftest import BotFactory
from tests.e2e.harness import Person, has_file
from tests.e2e.membership_support import seed_member

pytestmark = pytest.mark.e2e

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


async def test_a_member_claims_privately_and_a_moderator_approves_and_pays(
    people, make_bot: BotFactory
) -> None:
    anna: Person = await people("anna")
    mo: Person = await people("mo")
    bot = await make_bot(
        cops=[{"code": "HDEV", "name": "Heavy-duty EVs", "moderators": [mo.user_id]}]
    )
    await seed_member(bot.db_url, anna)
    management = await mo.join(bot.alias("secretariat"))
    cop_room = await anna.join(bot.alias("hdev"))  # invited once she became a member
    dm = await anna.open_dm(bot.user_id)
    day = (datetime.now(UTC) + timedelta(days=10)).astimezone(ZoneInfo("Europe/Brussels"))

    # A study visit is created; Anna says yes; it takes place; she is marked as attended.
    created = await mo.ask(
        management,
        f'!event create HDEV study-visit {day:%Y-%m-%d} 09:00 2d "Depot visit"',
        bot.user_id,
    )
    assert "Created E1" in created["content"]["body"]
    going = await anna.ask(dm, "!rsvp E1 yes", bot.user_id)
    assert "You're going to E1" in going["content"]["body"]
    await move_event_into_the_past(bot.db_url, 1, datetime.now(UTC))
    marked = await mo.ask(management, f"!attended E1 {anna.user_id}", bot.user_id)
    assert "Marked: " + anna.user_id in marked["content"]["body"]

    # Asked in the CoP room, the bot only says "let's do this privately" there.
    moved = await anna.ask(cop_room, "!claim new E1", bot.user_id)
    assert moved["content"]["body"] == "Let's do this privately: I have sent you a direct message."
    opened = await wait_for_text(anna, dm, bot.user_id, "Claim C1 is open as a draft")
    assert "Claims are private, so I answer here" in opened

    # In the DM: a rail ticket with its receipt, and the daily allowance.
    added = await anna.ask(dm, '!claim add C1 rail 120.50 "Brussels-Oslo"', bot.user_id)
    assert "needs a receipt" in added["content"]["body"]
    early = await anna.ask(dm, "!claim submit C1", bot.user_id)
    assert "line 1 (rail, EUR 120.50) needs a receipt" in early["content"]["body"]
    receipt = await upload(anna, dm, PDF, "ticket.pdf", "application/pdf")
    attached = await ask_replying(anna, dm, "!claim attach C1 1", target=receipt, bot=bot.user_id)
    assert "Receipt ticket.pdf attached to line 1" in attached["content"]["body"]
    allowance = await anna.ask(dm, "!claim add C1 daily-allowance", bot.user_id)
    assert "2 days — EUR 226.00" in allowance["content"]["body"]
    submitted = await anna.ask(dm, "!claim submit C1", bot.user_id)
    assert "Submitted C1" in submitted["content"]["body"]
    assert "Total: EUR 346.50 claimed" in submitted["content"]["body"]
    await wait_for_text(mo, management, bot.user_id, "New travel claim C1")

    # The receipt was uploaded encrypted; the moderator's client opens it in the (encrypted)
    # management room, and the bot never saw anything but the file object.
    assert anna.encrypted(dm) and mo.encrypted(management)
    await mo.ask(management, "!claim receipt C1", bot.user_id)
    shown = await mo.wait_until(
        lambda: [e for e in mo.messages_from(bot.user_id, management) if has_file(e)],
        what="the receipt in the management room",
    )
    assert "url" not in shown[0]["content"]  # passed on encrypted, as it came
    assert await mo.download(shown[0]["content"]) == PDF

    # The moderator approves another amount, with a reason, and later marks it paid.
    approved = await mo.ask(
        management, '!claim approve C1 300 "one day of allowance only"', bot.user_id
    )
    assert "C1 approved for EUR 300.00" in approved["content"]["body"]
    notice = await wait_for_text(anna, dm, bot.user_id, "was approved for EUR 300.00")
    assert "Reason: one day of allowance only" in notice
    await mo.ask(management, "!claim paid C1", bot.user_id)
    await wait_for_text(anna, dm, bot.user_id, "has been paid: EUR 300.00")

    # Finance gets a CSV whose lines add up to the approved total, to the cent.
    export = await mo.ask(management, "!export claims HDEV", bot.user_id)
    assert export["content"]["msgtype"] == "m.file"
    rows = list(csv.DictReader(io.StringIO((await download(mo, export)).decode("utf-8-sig"))))
    assert [row["category"] for row in rows] == ["rail", "daily-allowance"]
    assert sum(Decimal(row["approved_eur"]) for row in rows) == Decimal("300.00")
    assert {row["claim_approved_eur"] for row in rows} == {"300.00"}
    assert rows[0]["receipt"] == "ticket.pdf"

    # Nothing about the claim ever appeared in the CoP room.
    in_room = bodies(anna, cop_room, bot.user_id)
    assert not [body for body in in_room if "EUR" in body or "C1" in body]


async def test_a_member_claims_in_sek_at_the_commissions_rate_of_the_month(
    people, make_bot: BotFactory
) -> None:
    # The Commission's InforEuro service, played by a local server (never the internet).
    asked: list[str] = []

    async def monthly_rates(request: web.Request) -> web.Response:
        asked.append(f"{request.query['year']}-{request.query['month']}")
        body = '[{"isoA3Code": "SEK", "value": 11.0225}, {"isoA3Code": "NOK", "value": 11.6545}]'
        return web.Response(text=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/monthly-rates", monthly_rates)
    inforeuro = TestServer(app, host="127.0.0.1")
    await inforeuro.start_server()
    try:
        url = str(inforeuro.make_url("/monthly-rates")) + "?year={year}&month={month}"
        anna: Person = await people("anna")
        mo: Person = await people("mo")
        bot = await make_bot(
            cops=[{"code": "HDEV", "name": "Heavy-duty EVs", "moderators": [mo.user_id]}],
            claims={"rates_url": url},
        )
        await seed_member(bot.db_url, anna)
        management = await mo.join(bot.alias("secretariat"))
        dm = await anna.open_dm(bot.user_id)
        day = (datetime.now(UTC) + timedelta(days=10)).astimezone(ZoneInfo("Europe/Brussels"))
        await mo.ask(
            management,
            f'!event create HDEV in-person-meeting {day:%Y-%m-%d} 09:00 7h "Oslo meeting"',
            bot.user_id,
        )
        await anna.ask(dm, "!rsvp E1 yes", bot.user_id)
        await move_event_into_the_past(bot.db_url, 1, datetime.now(UTC))
        await mo.ask(management, f"!attended E1 {anna.user_id}", bot.user_id)
        await anna.wait_until(lambda: len(asked) >= 2, what="the rates job's two fetches")

        opened = await anna.ask(dm, "!claim new E1", bot.user_id)
        assert "Claim C1 is open as a draft" in opened["content"]["body"]
        added = await anna.ask(dm, "!claim add C1 air 1450 SEK km=1100", bot.user_id)
        text = added["content"]["body"]
        first_day = datetime.now(UTC).astimezone(ZoneInfo("Europe/Brussels")) - timedelta(days=2)
        month = f"{first_day:%B %Y}"
        assert (
            f"SEK 1,450.00 = EUR 131.55 (at 11.0225 SEK per EUR, InforEuro rate of {month})" in text
        ), text
        assert "C1 now totals EUR 131.55" in text
    finally:
        await inforeuro.close()
