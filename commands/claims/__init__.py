"""Travel-expense claims: claiming, checking, deciding, paying and exporting, privately.

Every claim command works in a direct message with the bot (and in the management room);
asked anywhere else, the bot says only "let's do this privately" there and carries on in
a direct message (``private`` in the declarations), so no amount, receipt or status is
ever written to a shared room.

One topic per module: :mod:`.money` and :mod:`.rules` (pure rules), :mod:`.access` (which
claim, who may act on it), :mod:`.lines` (expenses and receipts as typed), :mod:`.rates`
(monthly exchange rates), :mod:`.render`, :mod:`.claimant`, :mod:`.progress`, :mod:`.decide`
and :mod:`.finance`.
"""

from __future__ import annotations

from commands.claims import claimant, decide, finance, progress, rates
from commands.registry import Registry
from commands.services import Services

__all__ = ["finance", "register", "setup"]


def register(registry: Registry) -> None:
    registry.register(claimant.family, progress.family, decide.family)


async def setup(services: Services) -> None:
    """Fetch the monthly exchange rates on a schedule (see :mod:`.rates`)."""
    rates.schedule(services)
