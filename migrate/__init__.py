"""migrate: move Supabase Storage to S3 without losing a byte, and prove it."""

__version__ = "0.1.0"
