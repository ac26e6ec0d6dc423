"""The migration scripts (date-prefixed names; Alembic skips this file)."""
