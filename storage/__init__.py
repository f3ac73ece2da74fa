"""Persistence: SQLAlchemy models, repository functions and Alembic migrations."""

from storage.db import Database, DatabaseTooNew

__all__ = ["Database", "DatabaseTooNew"]
