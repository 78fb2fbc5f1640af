"""FastAPI service that upserts and reads records in MongoDB."""

__version__ = "0.1.0"
