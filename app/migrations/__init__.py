"""Alembic's environment and scripts, shipped inside the package (see app.core.migrations)."""
