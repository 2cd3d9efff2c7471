"""Alembic migrations, shipped inside the package so `arc db upgrade` works from an install."""
