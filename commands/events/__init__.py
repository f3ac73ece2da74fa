"""Events: planning and announcing them, RSVPs with waiting lists, guests, attendance,
reminders, calendar files and feeds, and their CSV exports.

One topic per module: :mod:`.parse` (arguments), :mod:`.times` (local times and UTC),
:mod:`.access` (who may see an event), :mod:`.render` (how events are written),
:mod:`.manage` (create, edit, cancel), :mod:`.rsvp` (list, show, answer), :mod:`.people`
(attendees, attendance, guests), :mod:`.reminders`, :mod:`.calendar` and :mod:`.exports`.
"""

from __future__ import annotations

from commands.events import calendar, exports, manage, people, reminders, rsvp
from commands.registry import Registry
from commands.services import Services

__all__ = ["exports", "register", "setup"]


def register(registry: Registry) -> None:
    registry.register(manage.family, rsvp.family, people.family, calendar.family)


async def setup(services: Services) -> None:
    """Serve calendar feeds and rebuild the reminder jobs from the database."""
    services.http.router.add_get("/calendar/{token}.ics", calendar.make_feed_handler(services))
    await reminders.rebuild_reminder_jobs(services)
