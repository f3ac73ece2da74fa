"""Read-only queries for the member and intel exports (``!export members|intel``).

No tables of its own: it reads the foundation's ``memberships``/``people`` and the intel
family's ``intel_items``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.intel import IntelItem
from storage.models import Membership, Person


async def memberships_of_cops(
    session: AsyncSession, cops: Sequence[str]
) -> list[tuple[Membership, Person | None]]:
    """Every membership row (any status) of the given CoPs, with the person's profile."""
    rows = await session.execute(
        select(Membership, Person)
        .outerjoin(Person, Person.user_id == Membership.user_id)
        .where(Membership.cop_code.in_(list(cops)))
        .order_by(Membership.cop_code, Membership.applied_at, Membership.id)
    )
    return [(membership, person) for membership, person in rows.all()]


async def live_intel_of_cops(session: AsyncSession, cops: Sequence[str]) -> list[IntelItem]:
    """The intel items of the given CoPs that were not removed, oldest first."""
    rows = await session.scalars(
        select(IntelItem)
        .where(IntelItem.cop_code.in_(list(cops)), IntelItem.removed_at.is_(None))
        .order_by(IntelItem.id)
    )
    return list(rows.all())
