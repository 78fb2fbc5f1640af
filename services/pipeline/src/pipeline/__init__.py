"""Dagster code location that exports MongoDB records into a Delta Lake table."""
