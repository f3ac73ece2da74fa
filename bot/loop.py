"""The event loop the bot's process runs on: uvloop (libuv's) by default, Python's own
asyncio loop when the configuration asks for it or uvloop is not installed.

On uvloop a round trip to PostgreSQL or to the homeserver costs the bot's process less
CPU: each one is a turn of the loop (a socket written, a wait, a socket read, a task
woken), and uvloop does that turn in C. Nothing else changes: the bot uses only what both
loops offer (tasks, sockets, signal handlers, threads for SQLite's waits).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from config.models import EventLoop

log = logging.getLogger(__name__)

T = TypeVar("T")


def chosen(choice: EventLoop) -> EventLoop:
    """The loop ``choice`` gives on this machine: uvloop only where it can be imported."""
    if choice == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            log.warning("uvloop is not installed: running on Python's asyncio loop")
            return "asyncio"
    return choice


def run(main: Coroutine[Any, Any, T], choice: EventLoop = "uvloop") -> T:
    """Run ``main`` to its end on a new event loop of the kind ``choice`` names (see
    :func:`chosen`), as :func:`asyncio.run` does."""
    kind = chosen(choice)
    log.info("running on the %s event loop", kind)
    if kind == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
