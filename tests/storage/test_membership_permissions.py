"""Who may use the moderator and admin commands of the membership family.

Every command is called by anyone, a member of another CoP, a member, a moderator of
another CoP, the CoP's moderator and an admin; it must work exactly for the roles that may
use it and be refused with a reason for everybody else. Each call is rolled back, so every
caller meets the same situation.
"""

from __future__ import annotations

import pytest

from tests.support.cast import ADMIN, ANNA, APPLICANT, CALLERS, MOD, MOD_SOLAR
from tests.support.world import World

EXTRA_MOD = "@extra-mod:test"
MODERATORS_AND_ADMINS = {"moderator", "admin"}

# command (about HDEV) -> the callers who may use it
MATRIX = {
    "applications HDEV": MODERATORS_AND_ADMINS,
    f"approve {APPLICANT} HDEV": MODERATORS_AND_ADMINS,
    f"reject {APPLICANT} HDEV Not a public buyer.": MODERATORS_AND_ADMINS,
    f"remove {ANNA} HDEV Asked to leave.": MODERATORS_AND_ADMINS,
    # Moderators of other CoPs may read the audit log, but only of their own CoPs (below).
    "audit": {"moderator of another CoP", "moderator", "admin"},
    f"mod add {APPLICANT} HDEV": {"admin"},
    f"mod remove {EXTRA_MOD} HDEV": {"admin"},
    # Members of other CoPs see organisations and countries, not Matrix IDs (below).
    "members HDEV": set(CALLERS) - {"anyone"},
}


async def prepare(world: World) -> None:
    """An application waiting in HDEV, an audited decision, a moderator added by command."""
    await world.profile(APPLICANT, "Miasto Gdańsk", "PL", "local-authority")
    assert (await world.send(APPLICANT, "join HDEV")).outcome == "ok"
    assert (await world.send(ADMIN, f"mod add {EXTRA_MOD} HDEV")).outcome == "ok"


@pytest.mark.parametrize("command", list(MATRIX))
async def test_each_command_is_allowed_exactly_for_its_roles(world: World, command: str) -> None:
    await prepare(world)
    allowed: dict[str, bool] = {}
    for label, caller in CALLERS.items():
        result = await world.send(caller, command, keep=False)
        allowed[label] = result.outcome != "denied"
        if allowed[label]:
            assert result.outcome == "ok", f"{label}: {result.reply}"
        else:
            assert result.reply.startswith("Sorry, "), f"{label}: {result.reply}"
            assert "only" in result.reply
    assert allowed == {label: label in MATRIX[command] for label in CALLERS}


async def test_a_denied_command_changes_nothing(world: World) -> None:
    await prepare(world)
    result = await world.send(MOD_SOLAR, f"approve {APPLICANT} HDEV")
    assert result.outcome == "denied"
    assert result.reply == "Sorry, only moderators of HDEV can do that (or the Secretariat)."
    assert [s for s in result.sent if s.kind != "message"] == []
    assert len(result.sent) == 1


async def test_moderators_read_the_audit_log_of_their_own_cops_only(world: World) -> None:
    await prepare(world)
    await world.send(MOD, f"approve {APPLICANT} HDEV")
    hdev = await world.send(MOD, "audit")
    other = await world.send(MOD_SOLAR, "audit")
    assert APPLICANT in hdev.reply
    assert APPLICANT not in other.reply and EXTRA_MOD not in other.reply


async def test_matrix_ids_of_members_go_only_to_people_inside_the_cop(world: World) -> None:
    seen = {
        label: ANNA in (await world.send(caller, "members HDEV")).reply
        for label, caller in CALLERS.items()
        if label != "anyone"
    }
    assert seen == {
        "member of another CoP": False,
        "member": True,
        "moderator of another CoP": False,
        "moderator": True,
        "admin": True,
    }
