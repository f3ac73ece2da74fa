"""Travel claims through their commands: who may claim, what the rules do to each line, the
decisions, and that nothing private reaches a shared room."""

from __future__ import annotations

import base64
import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from commands.claims.finance import claims_csv
from storage import claims as store
from tests.support.cast import ADMIN, ANNA, BEN, HDEV_ROOM, MGMT, MOD, MOD_SOLAR, dm_room
from tests.support.database import TestDatabase
from tests.support.world import CLAIMS_NOW, World, claimable_event, new_claim


@pytest.fixture
async def world(db: TestDatabase) -> World:
    """Ten days after the study visit of :func:`claimable_event`."""
    world = await World(db).seed()
    world.now = CLAIMS_NOW
    return world


async def submitted_claim(world: World) -> str:
    code = await new_claim(world)
    await world.send(ANNA, f"claim add {code} rail 120.50 Brussels-Oslo")
    world.upload("$ticket", ANNA)
    await world.send(ANNA, f"claim attach {code} 1", reply_to="$ticket")
    await world.send(ANNA, f"claim add {code} accommodation 400 nights=2")
    world.upload("$hotel", ANNA, mimetype="image/jpeg")
    await world.send(ANNA, f"claim attach {code} 2", reply_to="$hotel")
    await world.send(ANNA, f"claim add {code} daily-allowance")
    result = await world.send(ANNA, f"claim submit {code}")
    assert result.outcome == "ok", result.text
    return code


# --- eligibility -----------------------------------------------------------------------------


async def test_a_member_who_said_yes_and_attended_gets_a_draft_claim(world: World) -> None:
    number = await claimable_event(world)
    result = await world.send(ANNA, f"claim new E{number}")
    assert result.outcome == "ok"
    assert "Claim C1 is open as a draft" in result.here
    assert "Please submit by 2026-04-10 (Europe/Brussels time)" in result.here
    assert [entry.action for entry in await world.audit()] == ["claim.new"]


async def test_an_online_meeting_is_refused_with_the_rule(world: World) -> None:
    number = await claimable_event(world, kind="online-meeting")
    result = await world.send(ANNA, f"claim new E{number}")
    assert result.outcome == "refused"
    assert "only for in-person events" in result.here


async def test_without_a_yes_the_refusal_names_the_rsvp(world: World) -> None:
    number = await claimable_event(world, rsvp={ANNA: "maybe"})
    result = await world.send(ANNA, f"claim new E{number}")
    assert "your RSVP is 'maybe', not yes" in result.here


async def test_without_any_answer_the_refusal_says_so(world: World) -> None:
    number = await claimable_event(world, rsvp={})
    result = await world.send(ANNA, f"claim new E{number}")
    assert "you did not RSVP yes" in result.here


async def test_without_attendance_the_refusal_says_a_moderator_marks_it(world: World) -> None:
    number = await claimable_event(world, attended=())
    result = await world.send(ANNA, f"claim new E{number}")
    assert "not marked as having attended" in result.here
    assert "ask a moderator of HDEV" in result.here


async def test_after_the_deadline_the_refusal_names_the_date(world: World) -> None:
    number = await claimable_event(world)
    world.now = datetime(2026, 4, 11, 12, 0, tzinfo=UTC)
    result = await world.send(ANNA, f"claim new E{number}")
    assert "the deadline has passed: claims were due by 2026-04-10" in result.here


@pytest.mark.parametrize(
    ("now", "outcome"),
    [
        (datetime(2026, 4, 10, 21, 59, tzinfo=UTC), "ok"),  # 23:59 in Brussels
        (datetime(2026, 4, 10, 22, 0, tzinfo=UTC), "refused"),  # midnight in Brussels
    ],
)
async def test_the_deadline_ends_at_midnight_in_the_events_time_zone(
    world: World, now: datetime, outcome: str
) -> None:
    number = await claimable_event(world)
    world.now = now
    result = await world.send(ANNA, f"claim new E{number}")
    assert result.outcome == outcome, result.here


async def test_an_unknown_event_is_named(world: World) -> None:
    result = await world.send(ANNA, "claim new E99")
    # The one not-found answer for events: a missing event and a hidden one look the same.
    assert "can't find event E99" in result.here


async def test_a_second_claim_for_the_same_event_points_to_the_first(world: World) -> None:
    number = await claimable_event(world)
    await world.send(ANNA, f"claim new E{number}")
    result = await world.send(ANNA, f"claim new E{number}")
    assert "You already have claim C1 (draft)" in result.here


async def test_a_withdrawn_claim_can_be_replaced(world: World) -> None:
    code = await new_claim(world)
    await world.send(ANNA, f"claim withdraw {code}")
    result = await world.send(ANNA, "claim new E1")
    assert result.outcome == "ok"
    assert "Claim C2" in result.here


async def test_someone_who_is_no_member_cannot_claim(world: World) -> None:
    result = await world.send("@stranger:test", "claim new E1")
    assert result.outcome == "denied"
    assert "only for members" in result.here


# --- lines -----------------------------------------------------------------------------------


async def test_another_currency_is_converted_and_both_amounts_shown(world: World) -> None:
    code = await new_claim(world)
    result = await world.send(ANNA, f"claim add {code} air 1105 SEK km=1100 Oslo")
    assert (
        "SEK 1,105.00 = EUR 100.00 (at 11.05 SEK per EUR, rate set by the Secretariat)"
        in result.here
    )
    assert "needs a receipt" in result.here
    assert f"claim attach {code} 1" in result.here


async def test_a_taxi_is_refused_with_the_rule(world: World) -> None:
    code = await new_claim(world)
    result = await world.send(ANNA, f"claim add {code} taxi 35")
    assert result.outcome == "refused"
    assert "Taxis are not reimbursed" in result.here


async def test_a_car_line_is_priced_per_km(world: World) -> None:
    code = await new_claim(world)
    result = await world.send(ANNA, f"claim add {code} car 350 km")
    assert "350 km at EUR 0.22 — EUR 77.00" in result.here


async def test_the_daily_allowance_comes_from_the_events_days(world: World) -> None:
    code = await new_claim(world)  # 10 and 11 March in Brussels
    result = await world.send(ANNA, f"claim add {code} daily-allowance")
    assert "daily-allowance, 2 days — EUR 226.00" in result.here


async def test_a_hotel_over_the_cap_is_flagged_and_capped(world: World) -> None:
    code = await new_claim(world)
    result = await world.send(ANNA, f"claim add {code} accommodation 400 nights=2")
    assert "capped at EUR 336.00" in result.here
    assert "now totals EUR 400.00 (EUR 336.00 after the caps)" in result.here


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("rail 12.345", "more than two decimals"),
        ("rail 10 USD", "USD is not a currency I have a rate for; I have rates for EUR, SEK"),
        ("rail", "Give the amount you paid for rail"),
        ("", "<category> is missing"),
    ],
)
async def test_bad_lines_get_the_usage_and_what_is_wrong(
    world: World, typed: str, says: str
) -> None:
    code = await new_claim(world)
    result = await world.send(ANNA, f"claim add {code} {typed}")
    assert result.outcome in ("usage", "refused")
    assert says in result.here


async def test_an_amount_in_a_currency_word_that_is_a_note_stays_a_note(world: World) -> None:
    code = await new_claim(world)
    result = await world.send(ANNA, f"claim add {code} rail 80 tgv to Lyon")
    assert "EUR 80.00 · tgv to Lyon" in result.here


async def test_nobody_else_can_add_to_a_claim(world: World) -> None:
    code = await new_claim(world)
    result = await world.send(BEN, f"claim add {code} other 5")
    assert f"I can't find a claim {code} that you can see" in result.here


async def test_a_line_can_be_removed_from_a_draft(world: World) -> None:
    code = await new_claim(world)
    await world.send(ANNA, f"claim add {code} other 5")
    await world.send(ANNA, f"claim add {code} other 7")
    result = await world.send(ANNA, f"claim remove {code} 1")
    assert "Line 1 removed" in result.here
    assert "1. other — EUR 7.00" in result.here
    assert "Total: EUR 7.00 claimed" in result.here


# --- receipts --------------------------------------------------------------------------------


async def test_replying_to_an_uploaded_pdf_attaches_it(world: World) -> None:
    code = await new_claim(world)
    await world.send(ANNA, f"claim add {code} rail 120")
    world.upload("$pdf", ANNA)
    result = await world.send(ANNA, f"claim attach {code}", reply_to="$pdf")
    assert result.outcome == "ok", result.here
    assert "Receipt ticket.pdf attached to line 1" in result.here
    async with world.db.session() as s:
        [line] = await store.lines_of(s, 1)
    assert line.receipt_url == "mxc://test/pdf"


async def test_attach_without_a_reply_explains_how(world: World) -> None:
    code = await new_claim(world)
    await world.send(ANNA, f"claim add {code} rail 120")
    result = await world.send(ANNA, f"claim attach {code}")
    assert "upload the receipt (a photo or a PDF) in this chat, then reply" in result.here


async def test_a_file_that_is_no_photo_or_pdf_is_not_a_receipt(world: World) -> None:
    code = await new_claim(world)
    await world.send(ANNA, f"claim add {code} rail 120")
    world.upload("$zip", ANNA, mimetype="application/zip")
    result = await world.send(ANNA, f"claim attach {code}", reply_to="$zip")
    assert "must be a photo or a PDF" in result.here


async def test_someone_elses_file_is_not_your_receipt(world: World) -> None:
    code = await new_claim(world)
    await world.send(ANNA, f"claim add {code} rail 120")
    world.upload("$theirs", BEN)
    result = await world.send(ANNA, f"claim attach {code}", reply_to="$theirs")
    assert "a receipt that you uploaded yourself" in result.here


# --- submitting ------------------------------------------------------------------------------


async def test_a_ticket_without_a_receipt_blocks_submission_clearly(world: World) -> None:
    code = await new_claim(world)
    await world.send(ANNA, f"claim add {code} rail 120")
    await world.send(ANNA, f"claim add {code} other 12")
    result = await world.send(ANNA, f"claim submit {code}")
    assert result.outcome == "refused"
    assert "can't be submitted yet" in result.here
    assert "line 1 (rail, EUR 120.00) needs a receipt" in result.here
    assert f"claim attach {code} 1" in result.here
    assert not result.to(MGMT)


async def test_an_empty_claim_cannot_be_submitted(world: World) -> None:
    code = await new_claim(world)
    result = await world.send(ANNA, f"claim submit {code}")
    assert "the claim has no expenses yet" in result.here


async def test_submitting_freezes_the_claim_and_tells_the_management_room(world: World) -> None:
    code = await submitted_claim(world)
    result = await world.send(ANNA, f"claim show {code}")
    assert f"Claim {code} · submitted" in result.here
    async with world.db.session() as s:
        claim = await store.get_claim(s, 1)
    assert claim is not None
    assert (claim.claimed, claim.allowed) == (Decimal("746.50"), Decimal("682.50"))
    late = await world.send(ANNA, f"claim add {code} other 5")
    assert "it has been submitted and is waiting for a decision" in late.here
    actions = [entry.action for entry in await world.audit()]
    assert actions == ["claim.new", "claim.submit"]


async def test_the_management_room_hears_of_a_submitted_claim(world: World) -> None:
    code = await new_claim(world)
    await world.send(ANNA, f"claim add {code} other 12.40")
    result = await world.send(ANNA, f"claim submit {code}")
    [note] = result.to(MGMT)
    assert f"New travel claim {code} from {ANNA}" in note.body
    assert "EUR 12.40 claimed" in note.body
    assert f"Submitted {code}" in result.here


async def test_a_claim_submitted_after_the_deadline_is_refused(world: World) -> None:
    code = await new_claim(world)
    await world.send(ANNA, f"claim add {code} other 12")
    world.now = datetime(2026, 4, 12, tzinfo=UTC)
    result = await world.send(ANNA, f"claim submit {code}")
    assert "the deadline has passed" in result.here


# --- deciding --------------------------------------------------------------------------------


async def test_a_moderator_approves_another_amount_only_with_a_reason(world: World) -> None:
    code = await submitted_claim(world)
    without = await world.send(MOD, f"claim approve {code} 600", MGMT)
    assert without.outcome == "refused"
    assert "please give a reason" in without.here
    result = await world.send(
        MOD, f'claim approve {code} 600 "hotel receipt shows one night"', MGMT
    )
    assert result.outcome == "ok", result.here
    assert f"{code} approved for EUR 600.00" in result.here
    notice = result.dms_to(ANNA)
    assert "was approved for EUR 600.00" in notice
    assert "You claimed EUR 746.50; the caps allow EUR 682.50" in notice
    assert "Reason: hotel receipt shows one night" in notice
    async with world.db.session() as s:
        lines = await store.lines_of(s, 1)
    assert sum((line.approved or Decimal(0) for line in lines), Decimal(0)) == Decimal("600.00")


async def test_approving_without_an_amount_pays_what_the_rules_allow(world: World) -> None:
    code = await submitted_claim(world)
    result = await world.send(ADMIN, f"claim approve {code}", MGMT)
    assert f"{code} approved for EUR 682.50" in result.here


async def test_more_than_was_claimed_cannot_be_approved(world: World) -> None:
    code = await submitted_claim(world)
    result = await world.send(MOD, f"claim approve {code} 900 generous", MGMT)
    assert "more than the EUR 746.50 claimed" in result.here


async def test_a_rejection_needs_a_reason_and_is_told_to_the_claimant(world: World) -> None:
    code = await submitted_claim(world)
    bare = await world.send(MOD, f"claim reject {code}", MGMT)
    assert bare.outcome == "usage"
    assert "<reason…> is missing" in bare.here
    result = await world.send(MOD, f"claim reject {code} not an eligible trip", MGMT)
    assert "was not approved" in result.dms_to(ANNA)
    assert "Reason: not an eligible trip" in result.dms_to(ANNA)


async def test_paying_an_approved_claim_tells_the_claimant(world: World) -> None:
    code = await submitted_claim(world)
    await world.send(MOD, f"claim approve {code}", MGMT)
    result = await world.send(MOD, f"claim paid {code}", MGMT)
    assert "has been paid: EUR 682.50" in result.dms_to(ANNA)
    again = await world.send(MOD, f"claim paid {code}", MGMT)
    assert "it has been paid, which is final" in again.here
    actions = [entry.action for entry in await world.audit()]
    assert actions == ["claim.new", "claim.submit", "claim.approve", "claim.paid"]


async def test_a_submitted_claim_cannot_be_paid_before_approval(world: World) -> None:
    code = await submitted_claim(world)
    result = await world.send(MOD, f"claim paid {code}", MGMT)
    assert "waiting for a decision" in result.here


async def test_a_member_cannot_decide(world: World) -> None:
    code = await submitted_claim(world)
    result = await world.send(BEN, f"claim approve {code}")
    assert result.outcome == "denied"
    assert "only for moderators" in result.here


async def test_a_moderator_of_another_cop_does_not_even_see_the_claim(world: World) -> None:
    code = await submitted_claim(world)
    result = await world.send(MOD_SOLAR, f"claim approve {code}", MGMT)
    assert f"I can't find a claim {code}" in result.here
    shown = await world.send(MOD_SOLAR, f"claim show {code}", MGMT)
    assert "EUR" not in shown.here


async def test_a_moderator_cannot_approve_their_own_claim(world: World) -> None:
    number = await claimable_event(world, rsvp={MOD: "yes"}, attended=(MOD,))
    await world.send(MOD, f"claim new E{number}")
    await world.send(MOD, "claim add C1 other 10")
    await world.send(MOD, "claim submit C1")
    result = await world.send(MOD, "claim approve C1", MGMT)
    assert "cannot decide on your own claim" in result.here
    ok = await world.send(ADMIN, "claim approve C1", MGMT)
    assert ok.outcome == "ok"


async def test_withdrawing_a_submitted_claim_tells_the_management_room(world: World) -> None:
    code = await submitted_claim(world)
    result = await world.send(ANNA, f"claim withdraw {code}")
    assert f"{code} is withdrawn" in result.here
    assert "was withdrawn by its owner" in result.to(MGMT)[0].body
    late = await world.send(MOD, f"claim approve {code}", MGMT)
    assert "it was withdrawn, which is final" in late.here


async def test_pending_lists_what_waits_for_a_decision_and_for_payment(world: World) -> None:
    code = await submitted_claim(world)
    result = await world.send(MOD, "claims pending", MGMT)
    assert "To decide" in result.here
    assert f"{code} · {ANNA}" in result.here
    await world.send(MOD, f"claim approve {code}", MGMT)
    result = await world.send(MOD, "claims pending HDEV", MGMT)
    assert "To pay" in result.here
    other = await world.send(MOD_SOLAR, "claims pending", MGMT)
    assert "No claims are waiting (SOLAR)" in other.here
    refused = await world.send(MOD_SOLAR, "claims pending HDEV", MGMT)
    assert "only moderators of HDEV" in refused.here


async def test_my_claims_list_their_status(world: World) -> None:
    code = await submitted_claim(world)
    result = await world.send(ANNA, "claims")
    assert f"{code} · submitted" in result.here
    nobody = await world.send(BEN, "claims")
    assert "You have no travel claims" in nobody.here


async def test_a_moderator_sees_the_claimant_and_the_receipts(world: World) -> None:
    code = await submitted_claim(world)
    shown = await world.send(MOD, f"claim show {code}", MGMT)
    assert f"Claimant: {ANNA} (City of Oslo, NO)" in shown.here
    assert "receipt: ticket.pdf" in shown.here
    files = await world.send(MOD, f"claim receipt {code}", MGMT)
    urls = [s.payload.get("url") for s in files.to(MGMT)]
    assert urls == [None, "mxc://test/ticket", "mxc://test/hotel"]


# --- privacy ---------------------------------------------------------------------------------

PRIVACY_LINE = "Let's do this privately: I have sent you a direct message."


@pytest.mark.parametrize(
    "command",
    [
        "claims",
        "claim show C1",
        "claim new E1",
        "claim add C1 other 5",
        "claim add C1 other 12.345",
        "claim submit C1",
        "claim withdraw C1",
        "claim show C99",
    ],
)
async def test_a_claim_command_in_a_cop_room_leaks_nothing_there(
    world: World, command: str
) -> None:
    code = await submitted_claim(world)
    assert code == "C1"
    result = await world.send(ANNA, command, HDEV_ROOM)
    assert [s.body for s in result.to(HDEV_ROOM)] == [PRIVACY_LINE]
    assert "Claims are private, so I answer here" in result.dm
    assert result.dm.count("\n") >= 1


async def test_in_a_cop_room_the_answer_goes_to_the_dm_and_the_work_is_done(
    world: World,
) -> None:
    number = await claimable_event(world)
    result = await world.send(ANNA, f"claim new E{number}", HDEV_ROOM)
    assert [s.body for s in result.to(HDEV_ROOM)] == [PRIVACY_LINE]
    assert "Claim C1 is open as a draft" in result.dms_to(ANNA)
    shown = await world.send(ANNA, "claim show C1")
    assert "Claim C1 · draft" in shown.here


async def test_a_moderator_deciding_in_a_cop_room_is_moved_to_a_dm(world: World) -> None:
    code = await submitted_claim(world)
    result = await world.send(MOD, f"claim approve {code}", HDEV_ROOM)
    assert [s.body for s in result.to(HDEV_ROOM)] == [PRIVACY_LINE]
    assert f"{code} approved for EUR 682.50" in result.dms_to(MOD)


async def test_a_refusal_in_a_cop_room_rolls_back_and_goes_to_the_dm(world: World) -> None:
    code = await submitted_claim(world)
    result = await world.send(ANNA, f"claim withdraw {code}x", HDEV_ROOM)
    assert [s.body for s in result.to(HDEV_ROOM)] == [PRIVACY_LINE]
    assert "Usage: !claim withdraw <C#>" in result.dms_to(ANNA)


async def test_help_shows_the_real_arguments_of_claim_commands(world: World) -> None:
    result = await world.send(ANNA, "help claim add")
    assert "!claim add <C#> <category> [amount] [currency] [note…]" in result.here


# --- export ----------------------------------------------------------------------------------


async def test_the_csv_has_one_row_per_line_and_adds_up_to_the_cent(world: World) -> None:
    code = await submitted_claim(world)
    await world.send(MOD, f'claim approve {code} 333.33 "a third off"', MGMT)
    async with world.db.session() as s:
        ctx = world.context(s, ADMIN)
        data, count = await claims_csv(ctx, None)
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert count == len(rows) == 3
    assert [row["category"] for row in rows] == ["rail", "accommodation", "daily-allowance"]
    total = sum(Decimal(row["approved_eur"]) for row in rows)
    assert total == Decimal(rows[0]["claim_approved_eur"]) == Decimal("333.33")
    assert sum(Decimal(row["amount_eur"]) for row in rows) == Decimal(rows[0]["claim_claimed_eur"])
    assert sum(Decimal(row["allowed_eur"]) for row in rows) == Decimal(rows[0]["claim_allowed_eur"])
    assert rows[1]["flags"].startswith("over the accommodation cap")
    assert rows[0]["receipt"] == "ticket.pdf"


async def test_drafts_are_not_exported_and_cops_are_kept_apart(world: World) -> None:
    await new_claim(world)
    async with world.db.session() as s:
        ctx = world.context(s, ADMIN)
        _, count = await claims_csv(ctx, None)
    assert count == 0


async def test_a_dm_is_used_for_each_notice_to_the_claimant(world: World) -> None:
    code = await submitted_claim(world)
    result = await world.send(MOD, f"claim approve {code}", MGMT)
    assert [s.room_id for s in result.sent if "approved for" in s.body and s.room_id != MGMT] == [
        dm_room(ANNA)
    ]


async def test_export_claims_in_the_management_room_gives_the_csv_file(world: World) -> None:
    code = await submitted_claim(world)
    await world.send(MOD, f'claim approve {code} 500 "agreed by phone"', MGMT)
    result = await world.send(MOD, "export claims HDEV", MGMT)
    assert result.outcome == "ok", result.here
    [file] = [s for s in result.to(MGMT) if s.kind == "file"]
    assert file.payload["filename"].startswith("bbwt-claims-hdev-")
    data = base64.b64decode(file.payload["data_b64"]).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(data)))
    assert len(rows) == 3
    assert sum(Decimal(row["approved_eur"]) for row in rows) == Decimal("500.00")
    assert "3 rows" in result.here


async def test_export_claims_is_refused_outside_the_management_room(world: World) -> None:
    await submitted_claim(world)
    result = await world.send(MOD, "export claims HDEV")
    assert result.outcome == "refused"
    assert "only in the management room" in result.here
    assert not [s for s in result.sent if s.kind == "file"]
