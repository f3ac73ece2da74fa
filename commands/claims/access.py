"""What a claim command works on: :data:`CLAIM` tells the registry how to load a claim named
in a command (``C7``) and who may see it (its owner, moderators of its CoP and admins);
:func:`load` adds the event and the lines, :func:`step` asks the state machine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from commands.args import prefixed_id
from commands.claims.rules import Action, Actor, TransitionRefused, transition
from commands.context import Context
from commands.errors import CommandError, PermissionDenied
from commands.registry import Family, Handler, Place
from commands.roles import Role
from commands.scope import Kind, numbered
from commands.text import Message
from storage import claims as store
from storage import events as events_store
from storage.claims import Claim, ClaimLine, Status
from storage.events import Event

SECTION = "Claims"
PRIVATE_NOTE = (
    "You asked me about travel claims in a shared room. Claims are private, so I answer here."
)
claim_id = prefixed_id("C", "a claim")


async def _load(session: AsyncSession, number: int, lock: bool) -> Claim | None:
    return await store.get_claim(session, number, lock=lock)


def not_found(prefix: str, number: int) -> Message:
    return (
        Message(f"I can't find a claim C{number} that you can see. ")
        .code(f"{prefix}claims")
        .text(" lists yours.")
    )


CLAIM: Kind[Claim] = Kind(
    letter="C",
    noun="claim",
    load=_load,
    cop_of=lambda claim: claim.cop_code,
    not_found=not_found,
    seen_from=Role.MODERATOR,
    owner_of=lambda claim: claim.user_id,
    owned="made",
    topic="claims",
)


@dataclass
class Loaded:
    claim: Claim
    actor: Actor
    event: Event
    lines: list[ClaimLine]

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.event.timezone)


async def load(ctx: Context, claim: Claim) -> Loaded:
    """The claim the registry resolved, with its event, its lines and who acts on it."""
    assert ctx.scope is not None
    actor = Actor(ctx.scope.role, is_owner=ctx.scope.owner)
    event = await events_store.get_event(ctx.session, claim.event_id)
    if event is None:  # pragma: no cover - the foreign key keeps the event
        raise CommandError(f"The event of claim {claim.code} no longer exists.")
    return Loaded(claim, actor, event, await store.lines_of(ctx.session, claim.id))


def step(loaded: Loaded, action: Action) -> Status:
    """The claim's status after ``action``, or a refusal saying why not."""
    try:
        return transition(Status(loaded.claim.status), action, loaded.actor, loaded.claim.cop_code)
    except TransitionRefused as exc:
        text = exc.message[0].upper() + exc.message[1:]
        raise PermissionDenied(f"{loaded.claim.code}: {text}.") from None


async def audit(ctx: Context, claim: Claim, action: str, detail: str = "") -> None:
    await ctx.audit(
        f"claim.{action}",
        cop_code=claim.cop_code,
        target=f"{claim.code} {claim.user_id}",
        detail=detail,
    )


def private_command(family: Family, name: str, **kwargs: Any) -> Callable[[Handler], Handler]:
    """Declare a claims command: listed under Claims in ``!help``, answered only in private
    places (asked in a shared room, the bot says so there and answers in a direct message)."""
    return family.command(
        name, section=SECTION, places=Place.PRIVATE, private=PRIVATE_NOTE, **kwargs
    )


def claim_command(
    family: Family, name: str, *, owner: bool = False, lock: bool = False, **kwargs: Any
) -> Callable[[Handler], Handler]:
    """Declare a private command on one claim (``C7``, the first argument): for the
    moderators of the claim's CoP and admins, and with ``owner`` for the person who made it;
    ``lock`` for commands that change the claim."""
    return private_command(
        family,
        name,
        role=Role.MODERATOR,
        owner=owner,
        cop=numbered("claim", CLAIM, lock=lock),
        **kwargs,
    )
