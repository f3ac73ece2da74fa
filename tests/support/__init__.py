"""The one test world: one cast (:mod:`.cast`), one database fixture on SQLite and
PostgreSQL (:mod:`.database`), and a :class:`~tests.support.world.World` that runs commands
and events through the real ``Processor.handle`` and records what the bot would send."""
