"""The local stack: SeaweedFS (S3) and the bundled Supabase Storage server, for demos and tests."""
