"""FastAPI service that upserts and reads records in MongoDB."""
