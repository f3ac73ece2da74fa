"""The sections of a digest, each made by a *section provider*: new members, new market
intelligence, upcoming events and travel-claim deadlines (claims follow ``[claims]``
``deadline_days`` and ``eligible_kinds``). Another family can add one with
:func:`add_section`; a section must show nothing private."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from commands.events.render import kind_label
from commands.intel.parse import shown_title
from commands.text import Message, plural
from config.models import CopConfig, Settings
from storage import digest as store
from storage import events as events_store
from storage import intel as intel_store

EVENTS_AHEAD = timedelta(days=28)
CLAIMS_WITHIN = timedelta(days=7)
MAX_TITLE = 100


@dataclass
class DigestScope:
    """What a section provider gets: which CoP, which week, how to write times."""

    settings: Settings
    cop: CopConfig
    now: datetime
    start: datetime
    """Start of the seven days the digest looks back on."""
    tz: ZoneInfo

    @property
    def prefix(self) -> str:
        return self.settings.matrix.command_prefix

    @property
    def max_items(self) -> int:
        return self.settings.digest.max_items

    def local(self, when: datetime) -> datetime:
        return when.astimezone(self.tz)


@dataclass
class DigestSection:
    title: str
    items: list[Message]
    more: Message | None = None
    """A closing line, e.g. "…and 4 more: !intel list"."""


SectionProvider = Callable[[AsyncSession, DigestScope], Awaitable[DigestSection | None]]


@dataclass(order=True)
class _Provider:
    order: int
    name: str
    provider: SectionProvider = field(compare=False)


_PROVIDERS: dict[str, _Provider] = {}


def add_section(name: str, provider: SectionProvider, *, order: int) -> None:
    """Add (or replace) a digest section. Sections appear by ``order``; the built-in ones
    are members 10, intel 20, events 30, claim deadlines 40. A provider returns None or a
    section without items when it has nothing to say; it must show nothing private."""
    _PROVIDERS[name] = _Provider(order=order, name=name, provider=provider)


def sections() -> list[str]:
    return [p.name for p in sorted(_PROVIDERS.values())]


def _shorten(text: str, limit: int = MAX_TITLE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _more(count: int, scope: DigestScope, command: str) -> Message | None:
    if count <= 0:
        return None
    return Message(f"…and {count} more: ").code(f"{scope.prefix}{command}")


async def members_section(session: AsyncSession, scope: DigestScope) -> DigestSection | None:
    people = await store.new_members(session, scope.cop.code, scope.start, scope.now)
    items = []
    for person in people[: scope.max_items]:
        line = Message()
        if person.org:
            line.bold(person.org)
            if person.country:
                line.text(f" ({person.country})")
            line.text(f" · {person.user_id}")
        else:
            line.text(person.user_id)
        items.append(line)
    more = _more(len(people) - len(items), scope, f"members {scope.cop.code}")
    return DigestSection("Welcome to our new members", items, more)


async def intel_section(session: AsyncSession, scope: DigestScope) -> DigestSection | None:
    page = await intel_store.items_between(
        session, scope.cop.code, scope.start, scope.now, limit=scope.max_items
    )
    items = []
    for item in page.items:
        line = Message().bold(f"I{item.id}").text(" ")
        urls = list(item.urls or [])
        title = _shorten(shown_title(item.title, item.tag_list))
        if urls:
            line.link(urls[0], title)
        else:
            line.text(title)
        if item.file_url:
            line.text(" 📎")
        if item.tag_list:
            line.text(" · " + " ".join(f"#{t}" for t in item.tag_list[:4]))
        line.text(f" · by {item.author}")
        items.append(line)
    more = _more(page.total - len(items), scope, "intel list")
    return DigestSection("New market intelligence", items, more)


def _when(scope: DigestScope, start: datetime, end: datetime) -> str:
    first, last = scope.local(start), scope.local(end)
    text = f"{first:%a %d %b, %H:%M}"
    if last.date() == first.date():
        return text + f"–{last:%H:%M}"
    return text + f" – {last:%a %d %b, %H:%M}"


async def events_section(session: AsyncSession, scope: DigestScope) -> DigestSection | None:
    events = await events_store.digest_upcoming_events(
        session, scope.cop.code, scope.now, scope.now + EVENTS_AHEAD, limit=scope.max_items + 1
    )
    items = []
    for event in events[: scope.max_items]:
        line = Message().bold(f"E{event.id}").text(" ")
        line.text(f"{kind_label(event.kind).capitalize()}: {_shorten(event.title)}")
        line.text(f" — {_when(scope, event.starts_at, event.ends_at)}")
        counts = f"{event.yes} going"
        if event.maybe:
            counts += f", {event.maybe} maybe"
        if event.capacity is not None:
            left = max(event.capacity - event.yes, 0)
            counts += f", {left} of {plural(event.capacity, 'seat')} left"
        if event.waiting:
            counts += f", {event.waiting} waiting"
        items.append(line.text(f" · {counts}"))
    more = None
    if len(events) > len(items):  # asked for one more than shown: there are more
        more = Message("…and more: ").code(f"{scope.prefix}events {scope.cop.code}")
    section = DigestSection("Coming up in the next four weeks", items, more)
    if items:
        section.more = (section.more or Message()).append(
            Message(" Answer with ").code(f"{scope.prefix}rsvp E<number> yes|no|maybe")
        )
    return section


async def claims_section(session: AsyncSession, scope: DigestScope) -> DigestSection | None:
    rules = scope.settings.claims
    events = await events_store.digest_claim_deadlines(
        session,
        scope.cop.code,
        scope.now,
        scope.now + CLAIMS_WITHIN,
        deadline_days=rules.deadline_days,
        kinds=rules.eligible_kinds,
        limit=scope.max_items,
    )
    items = []
    for event in events:
        line = Message().bold(f"E{event.id}").text(f" {_shorten(event.title)}")
        if event.claim_deadline is not None:
            line.text(f" — claims until {scope.local(event.claim_deadline):%a %d %b, %H:%M}")
        items.append(line)
    section = DigestSection("Travel claims closing within a week", items)
    if items:
        section.more = Message("If you attended, send ").code(f"{scope.prefix}claim new E<number>")
        section.more.text(" in a direct message with me.")
    return section


add_section("members", members_section, order=10)
add_section("intel", intel_section, order=20)
add_section("events", events_section, order=30)
add_section("claims", claims_section, order=40)
