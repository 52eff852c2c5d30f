"""Shared infrastructure: settings, database, identity, errors, time."""
