"""Market intelligence (items, tags, full-text search) and weekly digest claims.

Full-text search differs per database and is created here only, never by the ORM:

* SQLite: FTS5 table ``intel_fts`` (rowid = item id) kept in step by triggers.
* PostgreSQL: generated ``tsvector`` column ``intel_items.search_vector`` with a GIN index.

Note for later migrations: a SQLite ``batch_alter_table`` on ``intel_items`` recreates the
table and drops its triggers; recreate them afterwards (see ``_SQLITE_TRIGGERS``).
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0001"

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_FTS_BODY = "coalesce({row}.note, '') || ' ' || coalesce({row}.file_name, '')"
_SQLITE_TRIGGERS = [
    f"""
    CREATE TRIGGER intel_items_fts_insert AFTER INSERT ON intel_items
    WHEN new.removed_at IS NULL BEGIN
        INSERT INTO intel_fts(rowid, title, tags, body)
        VALUES (new.id, new.title, new.tags, {_FTS_BODY.format(row="new")});
    END
    """,
    f"""
    CREATE TRIGGER intel_items_fts_update AFTER UPDATE ON intel_items BEGIN
        DELETE FROM intel_fts WHERE rowid = old.id;
        INSERT INTO intel_fts(rowid, title, tags, body)
        SELECT new.id, new.title, new.tags, {_FTS_BODY.format(row="new")}
        WHERE new.removed_at IS NULL;
    END
    """,
    """
    CREATE TRIGGER intel_items_fts_delete AFTER DELETE ON intel_items BEGIN
        DELETE FROM intel_fts WHERE rowid = old.id;
    END
    """,
]
_PG_SEARCH_VECTOR = """
    ALTER TABLE intel_items ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A')
        || setweight(to_tsvector('english'::regconfig, coalesce(tags, '')), 'B')
        || setweight(to_tsvector('english'::regconfig,
                     coalesce(note, '') || ' ' || coalesce(file_name, '')), 'C')
    ) STORED
"""


def upgrade() -> None:
    op.create_table(
        "intel_items",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("cop_code", sa.String(length=12), nullable=False),
        sa.Column("author", sa.String(length=255), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("urls", sa.JSON(), nullable=False),
        sa.Column("file_url", sa.String(length=500), nullable=True),
        sa.Column("file_name", sa.String(length=300), nullable=True),
        sa.Column("file_size", sa.BigInteger(), nullable=True),
        sa.Column("file_mimetype", sa.String(length=200), nullable=True),
        sa.Column("file_msgtype", sa.String(length=32), nullable=True),
        sa.Column("room_id", sa.String(length=255), nullable=True),
        sa.Column("event_id", sa.String(length=255), nullable=True),
        sa.Column("file_event_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("removed_by", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["cop_code"], ["cops.code"], name=op.f("fk_intel_items_cop_code_cops")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_intel_items")),
    )
    with op.batch_alter_table("intel_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_intel_items_author"), ["author"], unique=False)
        batch_op.create_index(batch_op.f("ix_intel_items_created_at"), ["created_at"], unique=False)
        batch_op.create_index(
            "ix_intel_items_cop_live", ["cop_code", "removed_at", "id"], unique=False
        )

    op.create_table(
        "intel_tags",
        sa.Column("item_id", BIG_ID, nullable=False),
        sa.Column("tag", sa.String(length=50), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["intel_items.id"],
            name=op.f("fk_intel_tags_item_id_intel_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("item_id", "tag", name=op.f("pk_intel_tags")),
    )
    with op.batch_alter_table("intel_tags", schema=None) as batch_op:
        batch_op.create_index("ix_intel_tags_tag_item", ["tag", "item_id"], unique=False)

    op.create_table(
        "digest_posts",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("cop_code", sa.String(length=12), nullable=False),
        sa.Column("iso_year", sa.Integer(), nullable=False),
        sa.Column("iso_week", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=255), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outbox_id", sa.BigInteger(), nullable=True),
        sa.Column("skipped", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cop_code"], ["cops.code"], name=op.f("fk_digest_posts_cop_code_cops")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_digest_posts")),
        sa.UniqueConstraint(
            "cop_code", "iso_year", "iso_week", name=op.f("uq_digest_posts_cop_code")
        ),
    )

    if op.get_context().dialect.name == "postgresql":
        op.execute(_PG_SEARCH_VECTOR)
        op.execute(
            "CREATE INDEX ix_intel_items_search_vector ON intel_items USING gin (search_vector)"
        )
    else:
        op.execute(
            "CREATE VIRTUAL TABLE intel_fts USING fts5("
            "title, tags, body, tokenize = 'porter unicode61 remove_diacritics 2')"
        )
        for trigger in _SQLITE_TRIGGERS:
            op.execute(trigger)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_intel_items_search_vector")
    else:
        for name in ("intel_items_fts_insert", "intel_items_fts_update", "intel_items_fts_delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS intel_fts")
    op.drop_table("digest_posts")
    with op.batch_alter_table("intel_tags", schema=None) as batch_op:
        batch_op.drop_index("ix_intel_tags_tag_item")
    op.drop_table("intel_tags")
    with op.batch_alter_table("intel_items", schema=None) as batch_op:
        batch_op.drop_index("ix_intel_items_cop_live")
        batch_op.drop_index(batch_op.f("ix_intel_items_created_at"))
        batch_op.drop_index(batch_op.f("ix_intel_items_author"))
    op.drop_table("intel_items")
