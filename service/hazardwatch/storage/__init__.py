"""Persistence: SQLAlchemy models, engine, the repository (the only SQL) and migrations."""
