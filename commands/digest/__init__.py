"""The weekly digest of each CoP room: :mod:`.sections` (what a digest says),
:mod:`.post` (building, posting once per week, the schedule) and :mod:`.commands`
(``!digest preview`` and ``!digest send``)."""

from __future__ import annotations

from commands.digest import commands
from commands.digest.post import (
    Digest,
    Outcome,
    build_digest,
    catch_up,
    due_moment,
    post_digest,
    run_scheduled,
    schedule_jobs,
)
from commands.digest.sections import DigestScope, DigestSection, add_section, sections
from commands.registry import Registry
from commands.services import Services

__all__ = [
    "Digest",
    "DigestScope",
    "DigestSection",
    "Outcome",
    "add_section",
    "build_digest",
    "catch_up",
    "due_moment",
    "post_digest",
    "register",
    "run_scheduled",
    "schedule_jobs",
    "sections",
    "setup",
]


def register(registry: Registry) -> None:
    registry.register(commands.family)


async def setup(services: Services) -> None:
    schedule_jobs(services)
    await catch_up(services)
    # The same idempotent catch-up, now and then: a run that failed is tried again soon.
    services.every(
        catch_up, services.settings.digest.retry_every, "digest-catch-up", args=[services]
    )
