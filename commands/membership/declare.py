"""The declaration shared by the commands on one person in one CoP (``!approve``,
``!reject``, ``!remove``, ``!mod add``, ``!mod remove``): ``<@user> <COP>`` first, the CoP
required and resolved by the registry, answered in private unless said otherwise."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from commands.args import Arg, cop_code, user_id
from commands.registry import Family, Handler, Place
from commands.scope import Missing, cop_arg


def person_in_cop(
    family: Family,
    name: str,
    *,
    more: Sequence[Arg] = (),
    places: Place = Place.PRIVATE,
    **kwargs: Any,
) -> Callable[[Handler], Handler]:
    """Declare ``name <@user> <COP> [more…]``; the handler gets ``user`` and ``cop``."""
    return family.command(
        name,
        args=[
            Arg("user", user_id, metavar="<@user>"),
            Arg("cop", cop_code, metavar="<COP>"),
            *more,
        ],
        cop=cop_arg(missing=Missing.REQUIRED),
        places=places,
        **kwargs,
    )
