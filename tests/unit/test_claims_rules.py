"""Who may claim for what, until when; and how a claim moves from draft to paid."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from commands.claims.rules import (
    TRANSITIONS,
    Action,
    Actor,
    EventFacts,
    Status,
    TransitionRefused,
    deadline_day,
    eligibility_problems,
    event_days,
    may_view,
    transition,
    within_deadline,
)
from commands.registry import Role
from config.claims import ClaimsConfig

RULES = ClaimsConfig()
BRUSSELS = ZoneInfo("Europe/Brussels")
HELSINKI = ZoneInfo("Europe/Helsinki")


def facts(**changes: object) -> EventFacts:
    base: dict[str, object] = {
        "kind": "study-visit",
        "rsvp": "yes",
        "attended": True,
        "days": [date(2026, 3, 10), date(2026, 3, 11)],
        "tz": BRUSSELS,
    }
    base.update(changes)
    return EventFacts(**base)  # type: ignore[arg-type]


NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


# --- eligibility ---------------------------------------------------------------------------------


def test_someone_who_said_yes_and_attended_an_in_person_event_may_claim() -> None:
    assert eligibility_problems(facts(), NOW, RULES) == []


@pytest.mark.parametrize(
    "kind",
    ["in-person-meeting", "study-visit", "market-dialogue", "pitching-session", "industry-meeting"],
)
def test_every_in_person_kind_is_eligible_by_default(kind: str) -> None:
    assert eligibility_problems(facts(kind=kind), NOW, RULES) == []


def test_an_online_meeting_is_refused_because_travel_is_only_for_in_person_events() -> None:
    [problem] = eligibility_problems(facts(kind="online-meeting"), NOW, RULES)
    assert "online meeting" in problem
    assert "only for in-person events" in problem


@pytest.mark.parametrize(
    ("rsvp", "says"),
    [(None, "you did not RSVP yes"), ("no", "your RSVP is 'no'"), ("maybe", "'maybe'")],
)
def test_without_a_yes_rsvp_the_refusal_says_so(rsvp: str | None, says: str) -> None:
    [problem] = eligibility_problems(facts(rsvp=rsvp), NOW, RULES)
    assert says in problem


def test_without_attendance_the_refusal_says_a_moderator_marks_it() -> None:
    [problem] = eligibility_problems(facts(attended=False), NOW, RULES)
    assert "not marked as having attended" in problem


def test_a_cancelled_event_is_refused() -> None:
    assert eligibility_problems(facts(cancelled=True), NOW, RULES) == ["the event was cancelled"]


def test_every_failed_condition_is_named_at_once() -> None:
    problems = eligibility_problems(
        facts(kind="online-meeting", rsvp=None, attended=False),
        datetime(2027, 1, 1, tzinfo=UTC),
        RULES,
    )
    assert len(problems) == 4


def test_the_deadline_is_30_calendar_days_after_the_last_day() -> None:
    assert deadline_day(date(2026, 3, 11), RULES) == date(2026, 4, 10)
    assert deadline_day(date(2026, 3, 11), ClaimsConfig(deadline_days=10)) == date(2026, 3, 21)


def test_the_deadline_day_is_the_whole_day_in_the_events_time_zone() -> None:
    last_day = date(2026, 3, 11)  # deadline: 2026-04-10, Brussels (CEST, UTC+2)
    just_in = datetime(2026, 4, 10, 21, 59, 59, tzinfo=UTC)  # 23:59:59 in Brussels
    just_out = datetime(2026, 4, 10, 22, 0, 0, tzinfo=UTC)  # 00:00 on the 11th in Brussels
    assert within_deadline(just_in, last_day, BRUSSELS, RULES)
    assert not within_deadline(just_out, last_day, BRUSSELS, RULES)


def test_the_same_moment_can_be_in_time_in_one_zone_and_late_in_another() -> None:
    moment = datetime(2026, 4, 10, 21, 30, tzinfo=UTC)  # 23:30 Brussels, 00:30 Helsinki
    assert within_deadline(moment, date(2026, 3, 11), BRUSSELS, RULES)
    assert not within_deadline(moment, date(2026, 3, 11), HELSINKI, RULES)


def test_a_late_claim_names_the_deadline_and_the_time_zone() -> None:
    late = datetime(2026, 4, 10, 22, 0, tzinfo=UTC)
    [problem] = eligibility_problems(facts(), late, RULES)
    assert "2026-04-10" in problem
    assert "Europe/Brussels" in problem


def test_event_days_are_counted_in_the_events_time_zone() -> None:
    # 23:30 UTC on 9 March is already 10 March in Brussels.
    start = datetime(2026, 3, 9, 23, 30, tzinfo=UTC)
    end = datetime(2026, 3, 11, 15, 0, tzinfo=UTC)
    assert event_days(start, end, BRUSSELS) == [date(2026, 3, 10), date(2026, 3, 11)]
    assert event_days(start, end, ZoneInfo("UTC")) == [
        date(2026, 3, 9),
        date(2026, 3, 10),
        date(2026, 3, 11),
    ]


def test_an_event_ending_at_midnight_does_not_count_the_next_day() -> None:
    start = datetime(2026, 3, 10, 8, 0, tzinfo=BRUSSELS)
    end = datetime(2026, 3, 11, 0, 0, tzinfo=BRUSSELS)
    assert event_days(start, end, BRUSSELS) == [date(2026, 3, 10)]
    assert event_days(start, start, BRUSSELS) == [date(2026, 3, 10)]


# --- the state machine ---------------------------------------------------------------------------

OWNER_MEMBER = Actor(Role.MEMBER, is_owner=True)
ACTORS = {
    "anyone": Actor(Role.ANYONE),
    "guest": Actor(Role.GUEST),
    "another member": Actor(Role.MEMBER),
    "the owner": OWNER_MEMBER,
    "a moderator of the CoP": Actor(Role.MODERATOR),
    "an admin": Actor(Role.ADMIN),
    "the owner who moderates the CoP": Actor(Role.MODERATOR, is_owner=True),
    "the owner who is an admin": Actor(Role.ADMIN, is_owner=True),
}

ALLOWED: dict[tuple[Status, Action], Status] = {
    (Status.DRAFT, Action.EDIT): Status.DRAFT,
    (Status.DRAFT, Action.SUBMIT): Status.SUBMITTED,
    (Status.DRAFT, Action.WITHDRAW): Status.WITHDRAWN,
    (Status.SUBMITTED, Action.WITHDRAW): Status.WITHDRAWN,
    (Status.SUBMITTED, Action.APPROVE): Status.APPROVED,
    (Status.SUBMITTED, Action.REJECT): Status.REJECTED,
    (Status.APPROVED, Action.PAY): Status.PAID,
}
"""The whole table of allowed moves; everything else is refused."""

OWNER_ONLY = {Action.EDIT, Action.SUBMIT, Action.WITHDRAW}


def entitled(actor: Actor, action: Action) -> bool:
    if action in OWNER_ONLY:
        return actor.is_owner
    return actor.role >= Role.MODERATOR and not actor.is_owner


def test_the_machine_allows_exactly_the_documented_moves() -> None:
    table = {
        (source, action): target
        for action, (sources, target) in TRANSITIONS.items()
        for source in sources
    }
    assert table == ALLOWED


CASES = [
    pytest.param(status, action, who, id=f"{who} {action} when {status}")
    for status, action, who in itertools.product(Status, Action, ACTORS)
]


@pytest.mark.parametrize(("status", "action", "who"), CASES)
def test_every_transition_by_every_role(status: Status, action: Action, who: str) -> None:
    actor = ACTORS[who]
    allowed = (status, action) in ALLOWED and entitled(actor, action)
    if allowed:
        assert transition(status, action, actor, "HDEV") == ALLOWED[status, action]
    else:
        with pytest.raises(TransitionRefused) as refused:
            transition(status, action, actor, "HDEV")
        assert refused.value.message  # always says why


def test_a_member_is_told_only_moderators_decide() -> None:
    with pytest.raises(TransitionRefused, match="only moderators of HDEV or the Secretariat"):
        transition(Status.SUBMITTED, Action.APPROVE, Actor(Role.MEMBER), "HDEV")


def test_a_moderator_cannot_approve_their_own_claim() -> None:
    with pytest.raises(TransitionRefused, match="cannot decide on your own claim"):
        transition(Status.SUBMITTED, Action.APPROVE, Actor(Role.ADMIN, is_owner=True))


def test_a_moderator_cannot_submit_or_withdraw_someone_elses_claim() -> None:
    for action in (Action.SUBMIT, Action.WITHDRAW, Action.EDIT):
        with pytest.raises(TransitionRefused, match="only the person who made a claim"):
            transition(Status.DRAFT, action, Actor(Role.ADMIN))


def test_status_only_moves_forward() -> None:
    order = [Status.DRAFT, Status.SUBMITTED, Status.APPROVED, Status.PAID]
    for source, target in ALLOWED.items():
        if source[0] in order and target in order:
            assert order.index(target) >= order.index(source[0])
    for final in (Status.PAID, Status.REJECTED, Status.WITHDRAWN):
        assert all(source != final for source, _ in ALLOWED)


def test_a_refusal_says_what_state_the_claim_is_in() -> None:
    with pytest.raises(TransitionRefused, match="it has been paid, which is final"):
        transition(Status.PAID, Action.APPROVE, Actor(Role.MODERATOR))
    with pytest.raises(TransitionRefused, match="waiting for a decision"):
        transition(Status.SUBMITTED, Action.EDIT, OWNER_MEMBER)


def test_only_the_owner_moderators_and_admins_see_a_claim() -> None:
    seeing = {who for who, actor in ACTORS.items() if may_view(actor)}
    assert seeing == {
        "the owner",
        "a moderator of the CoP",
        "an admin",
        "the owner who moderates the CoP",
        "the owner who is an admin",
    }
