"""Alembic migrations for the controller database (run by ``tether controller serve``)."""
