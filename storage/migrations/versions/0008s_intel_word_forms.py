"""Intel search on word forms made in Python: folded accents, stems in several languages.

Adds ``intel_items.search_title``, ``search_tags`` and ``search_body`` (see
:mod:`storage.wordforms`), fills them for every existing item, and rebuilds the search
indexes over them instead of over the raw text with English stemming:

* SQLite: ``intel_fts`` again (cop, title, tags, body), now holding the forms, tokenized
  by ``unicode61`` without its diacritics step (the forms are folded already); the triggers
  copy the ``search_*`` columns. The CoP code (not indexed, first so that reading it is
  cheap) lets a search keep to some CoPs without reading ``intel_items``.
* PostgreSQL: ``search_vector`` generated from the ``search_*`` columns with the ``simple``
  configuration (no stemming, no stop words: the forms are made already).

Needs 0004 (``intel_items``) as well as 0007g: ``depends_on``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from storage.intel import search_columns

revision: str = "0008s"
down_revision: str | None = "0007g"
depends_on: str | Sequence[str] | None = "0004"  # intel_items

COLUMNS = ("search_title", "search_tags", "search_body")
BATCH = 2000

_NEW_TRIGGERS = [
    """
    CREATE TRIGGER intel_items_fts_insert AFTER INSERT ON intel_items
    WHEN new.removed_at IS NULL BEGIN
        INSERT INTO intel_fts(rowid, cop, title, tags, body)
        VALUES (new.id, new.cop_code, new.search_title, new.search_tags, new.search_body);
    END
    """,
    """
    CREATE TRIGGER intel_items_fts_update AFTER UPDATE ON intel_items BEGIN
        DELETE FROM intel_fts WHERE rowid = old.id;
        INSERT INTO intel_fts(rowid, cop, title, tags, body)
        SELECT new.id, new.cop_code, new.search_title, new.search_tags, new.search_body
        WHERE new.removed_at IS NULL;
    END
    """,
    """
    CREATE TRIGGER intel_items_fts_delete AFTER DELETE ON intel_items BEGIN
        DELETE FROM intel_fts WHERE rowid = old.id;
    END
    """,
]
_NEW_FTS = (
    "CREATE VIRTUAL TABLE intel_fts USING fts5("
    "cop UNINDEXED, title, tags, body, tokenize = 'unicode61 remove_diacritics 0')"
)
_NEW_FILL = (
    "INSERT INTO intel_fts(rowid, cop, title, tags, body) "
    "SELECT id, cop_code, search_title, search_tags, search_body FROM intel_items "
    "WHERE removed_at IS NULL"
)
_NEW_VECTOR = """
    ALTER TABLE intel_items ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple'::regconfig, search_title), 'A')
        || setweight(to_tsvector('simple'::regconfig, search_tags), 'B')
        || setweight(to_tsvector('simple'::regconfig, search_body), 'C')
    ) STORED
"""

# What migration 0004 made, for the way back.
_OLD_BODY = "coalesce({row}.note, '') || ' ' || coalesce({row}.file_name, '')"
_OLD_TRIGGERS = [
    f"""
    CREATE TRIGGER intel_items_fts_insert AFTER INSERT ON intel_items
    WHEN new.removed_at IS NULL BEGIN
        INSERT INTO intel_fts(rowid, title, tags, body)
        VALUES (new.id, new.title, new.tags, {_OLD_BODY.format(row="new")});
    END
    """,
    f"""
    CREATE TRIGGER intel_items_fts_update AFTER UPDATE ON intel_items BEGIN
        DELETE FROM intel_fts WHERE rowid = old.id;
        INSERT INTO intel_fts(rowid, title, tags, body)
        SELECT new.id, new.title, new.tags, {_OLD_BODY.format(row="new")}
        WHERE new.removed_at IS NULL;
    END
    """,
    _NEW_TRIGGERS[2],
]
_OLD_FTS = (
    "CREATE VIRTUAL TABLE intel_fts USING fts5("
    "title, tags, body, tokenize = 'porter unicode61 remove_diacritics 2')"
)
_OLD_FILL = (
    "INSERT INTO intel_fts(rowid, title, tags, body) "
    f"SELECT id, title, tags, {_OLD_BODY.format(row='intel_items')} FROM intel_items "
    "WHERE removed_at IS NULL"
)
_OLD_VECTOR = """
    ALTER TABLE intel_items ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A')
        || setweight(to_tsvector('english'::regconfig, coalesce(tags, '')), 'B')
        || setweight(to_tsvector('english'::regconfig,
                     coalesce(note, '') || ' ' || coalesce(file_name, '')), 'C')
    ) STORED
"""
_TRIGGER_NAMES = ("intel_items_fts_insert", "intel_items_fts_update", "intel_items_fts_delete")


def _drop_indexes(postgresql: bool) -> None:
    if postgresql:
        op.execute("DROP INDEX IF EXISTS ix_intel_items_search_vector")
        op.execute("ALTER TABLE intel_items DROP COLUMN IF EXISTS search_vector")
    else:
        for name in _TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS intel_fts")


def _fill_forms() -> None:
    """Compute the word forms of every item, in batches (the indexes are gone meanwhile,
    so no trigger or generated column works on each row)."""
    conn = op.get_bind()
    items = sa.table(
        "intel_items",
        sa.column("id", sa.Integer),
        sa.column("title", sa.Text),
        sa.column("tags", sa.Text),
        sa.column("note", sa.Text),
        sa.column("file_name", sa.Text),
        *(sa.column(name, sa.Text) for name in COLUMNS),
    )
    update = (
        sa.update(items)
        .where(items.c.id == sa.bindparam("item_id"))
        .values({name: sa.bindparam(name) for name in COLUMNS})
    )
    last = 0
    while True:
        rows = conn.execute(
            sa.select(items.c.id, items.c.title, items.c.tags, items.c.note, items.c.file_name)
            .where(items.c.id > last)
            .order_by(items.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        conn.execute(
            update,
            [
                {"item_id": row.id, **search_columns(row.title, row.tags, row.note, row.file_name)}
                for row in rows
            ],
        )
        last = rows[-1].id


def upgrade() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"
    _drop_indexes(postgresql)
    for name in COLUMNS:
        op.add_column("intel_items", sa.Column(name, sa.Text(), nullable=False, server_default=""))
    _fill_forms()
    if postgresql:
        op.execute(_NEW_VECTOR)
        op.execute(
            "CREATE INDEX ix_intel_items_search_vector ON intel_items USING gin (search_vector)"
        )
    else:
        op.execute(_NEW_FTS)
        op.execute(_NEW_FILL)
        for trigger in _NEW_TRIGGERS:
            op.execute(trigger)


def downgrade() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"
    _drop_indexes(postgresql)
    with op.batch_alter_table("intel_items", schema=None) as batch_op:
        for name in COLUMNS:
            batch_op.drop_column(name)
    if postgresql:
        op.execute(_OLD_VECTOR)
        op.execute(
            "CREATE INDEX ix_intel_items_search_vector ON intel_items USING gin (search_vector)"
        )
    else:
        op.execute(_OLD_FTS)
        op.execute(_OLD_FILL)
        for trigger in _OLD_TRIGGERS:
            op.execute(trigger)
