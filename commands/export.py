"""``!export <what> [COP]``: CSV files for the moderators, and the registry of what can be
exported. A family adds a kind of export with :func:`exporter`; its build function gets the
CoPs the caller moderates (or the one named) and returns the file name part and the CSV.
Some exports are more private than others: each says where it may be made."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from commands.args import Arg, ArgError, cop_or_all
from commands.context import Context
from commands.errors import CommandError
from commands.registry import Family, Place, Registry
from commands.roles import Role
from commands.scope import CopSet, Missing, cop_arg
from commands.text import Message, plural
from config.models import CopConfig

family = Family()

Build = Callable[[Context, list[str]], Awaitable[tuple[str, bytes]]]
"""``await build(ctx, cop_codes)`` -> (name, CSV bytes)."""


@dataclass(frozen=True)
class Exporter:
    name: str
    description: str
    build: Build
    places: Place = Place.PRIVATE
    label: str = ""
    """What it is called in a refusal: ``Travel claims are exported only in …``."""


EXPORTERS: dict[str, Exporter] = {}
"""What ``!export`` can produce, by name (filled as the families' modules are imported)."""


def exporter(
    name: str, description: str, *, places: Place = Place.PRIVATE, label: str = ""
) -> Callable[[Build], Build]:
    """Declare an export: ``@exporter("events", "events with their answer counts")``."""

    def wrap(build: Build) -> Build:
        EXPORTERS[name.lower()] = Exporter(name.lower(), description, build, places, label)
        return build

    return wrap


def csv_cell(value: object) -> str:
    """Text for a CSV cell; free text that a spreadsheet would run as a formula is defused."""
    if value is None:
        return ""
    text = str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not re.match(r"^@[^\s:]+:\S+$", text):
        return "'" + text
    return text


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([csv_cell(value) for value in row])
    return buffer.getvalue().encode("utf-8-sig")


def utc_cell(dt: datetime | None) -> str:
    """``2026-03-01T08:00:00Z`` (empty for no time)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if dt else ""


def parse_export_kind(token: str) -> str:
    value = token.strip().lower()
    if value not in EXPORTERS:
        known = ", ".join(sorted(EXPORTERS))
        raise ArgError(f"{token!r} is not something I can export; choose one of: {known}")
    return value


@family.command(
    "export",
    help="Download a CSV file for the CoPs you moderate (or one CoP).\n"
    "What can be exported: members, intel, events, rsvps and (in the management room) "
    "claims.",
    section="Moderation",
    args=[
        Arg("what", parse_export_kind, metavar="<what>"),
        Arg("cop", cop_or_all, optional=True, metavar="<COP>"),
    ],
    role=Role.MODERATOR,
    cop=cop_arg(missing=Missing.MINE, all_word=True),
    places=Place.PRIVATE,
    examples=["!export events HDEV", "!export rsvps"],
)
async def export(ctx: Context, what: str, cop: CopConfig | CopSet) -> None:
    exporter = EXPORTERS[what]
    if ctx.place not in exporter.places:
        label = exporter.label or exporter.description.capitalize()
        raise CommandError(
            f"{label} are exported only in {exporter.places.describe()}, where the "
            "Secretariat and the moderators are. Please ask there."
        )
    cops = [cop.code] if isinstance(cop, CopConfig) else list(cop.codes)
    name, data = await exporter.build(ctx, cops)
    suffix = cops[0].lower() if len(cops) == 1 else "all"
    filename = f"bbwt-{name}-{suffix}-{ctx.now.astimezone(UTC):%Y%m%d}.csv"
    await ctx.reply_file(filename, "text/csv", data)
    rows = max(len(list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))) - 1, 0)
    await ctx.audit(
        f"export.{what}", cop_code=cops[0] if len(cops) == 1 else None, detail=", ".join(cops)
    )
    await ctx.reply(
        Message(f"Export of {exporter.description} for {', '.join(cops)}: ").text(
            f"{plural(rows, 'row')} in {filename}."
        )
    )


def register(registry: Registry) -> None:
    registry.register(family)
