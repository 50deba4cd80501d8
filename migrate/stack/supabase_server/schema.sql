-- The storage schema of Supabase Storage (github.com/supabase/storage,
-- migrations/tenant/), as it stands after the migrations up to today:
--   0002-storage-schema          buckets, objects, bname, bucketid_objname, name_prefix_search, RLS on
--   0002-pathtoken-column        objects.path_tokens generated from name
--   0007-add-public-to-buckets   buckets.public
--   0010-add-trigger-to-auto-update-updated_at-column
--   0011-add-automatic-avif-detection-flag
--   0012/0014                    buckets.file_size_limit (bigint), allowed_mime_types
--   0014-add-version             objects.version
--   0017..                       owner_id text on buckets and objects
--   0025-custom-metadata         objects.user_metadata
--   0038-iceberg-catalog-flag-on-buckets  buckets.type storage.buckettype
--   unicode-object-names         objects_name_check (XML 1.0 characters only)
--   0052-drop-not-used-indexes-and-functions  drops objects.level and storage.prefixes again
-- plus the C-collation listing indexes (bucket_id, name COLLATE "C") and
-- (bucket_id, lower(name) COLLATE "C") the hosted schema carries.
--
-- Idempotent: every statement is IF NOT EXISTS / OR REPLACE or guarded.
-- Roles (anon, authenticated, service_role) are NOT created: the PostgreSQL
-- server may be shared, so the server enforces roles itself (see auth.py).

CREATE SCHEMA IF NOT EXISTS storage;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname = 'storage' AND t.typname = 'buckettype'
    ) THEN
        CREATE TYPE storage.buckettype AS ENUM ('STANDARD', 'ANALYTICS', 'VECTOR');
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS storage.buckets (
    id text NOT NULL PRIMARY KEY,
    name text NOT NULL,
    owner uuid,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now(),
    public boolean DEFAULT false,
    avif_autodetection boolean DEFAULT false,
    file_size_limit bigint,
    allowed_mime_types text[],
    owner_id text,
    type storage.buckettype NOT NULL DEFAULT 'STANDARD'
);

CREATE UNIQUE INDEX IF NOT EXISTS bname ON storage.buckets USING btree (name);

CREATE TABLE IF NOT EXISTS storage.objects (
    id uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    bucket_id text,
    name text,
    owner uuid,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now(),
    last_accessed_at timestamptz DEFAULT now(),
    metadata jsonb,
    path_tokens text[] GENERATED ALWAYS AS (string_to_array(name, '/')) STORED,
    version text,
    owner_id text,
    user_metadata jsonb,
    CONSTRAINT "objects_bucketId_fkey" FOREIGN KEY (bucket_id) REFERENCES storage.buckets (id)
);

CREATE UNIQUE INDEX IF NOT EXISTS bucketid_objname ON storage.objects USING btree (bucket_id, name);
CREATE INDEX IF NOT EXISTS name_prefix_search ON storage.objects USING btree (name text_pattern_ops);
CREATE INDEX IF NOT EXISTS idx_objects_bucket_id_name ON storage.objects USING btree (bucket_id, name COLLATE "C");
CREATE INDEX IF NOT EXISTS idx_objects_bucket_id_name_lower ON storage.objects USING btree (bucket_id, lower(name) COLLATE "C");

-- unicode-object-names: any text XML 1.0 can carry (UTF8 databases; PostgreSQL
-- text never holds NUL or lone surrogates, so those need no check).
DO $$
BEGIN
    IF current_setting('server_encoding') = 'UTF8' AND NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'objects_name_check' AND conrelid = 'storage.objects'::regclass
    ) THEN
        ALTER TABLE storage.objects ADD CONSTRAINT objects_name_check CHECK (
            name !~ E'[\\x01-\\x08\\x0B\\x0C\\x0E-\\x1F]'
            AND POSITION(U&'\FFFE' IN name) = 0
            AND POSITION(U&'\FFFF' IN name) = 0
        );
    END IF;
END
$$;

ALTER TABLE storage.buckets ENABLE ROW LEVEL SECURITY;
ALTER TABLE storage.objects ENABLE ROW LEVEL SECURITY;

-- 0010: updated_at follows every UPDATE of a row.
CREATE OR REPLACE FUNCTION storage.update_updated_at_column()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END;
$$;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_trigger
        WHERE tgname = 'update_objects_updated_at' AND tgrelid = 'storage.objects'::regclass
    ) THEN
        CREATE TRIGGER update_objects_updated_at
            BEFORE UPDATE ON storage.objects
            FOR EACH ROW EXECUTE FUNCTION storage.update_updated_at_column();
    END IF;
END
$$;

-- Helpers RLS policies written for Supabase use (0002).
CREATE OR REPLACE FUNCTION storage.foldername(name text)
RETURNS text[]
LANGUAGE sql IMMUTABLE
AS $$
    SELECT (string_to_array(name, '/'))[1:array_length(string_to_array(name, '/'), 1) - 1];
$$;

CREATE OR REPLACE FUNCTION storage.filename(name text)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT (string_to_array(name, '/'))[array_length(string_to_array(name, '/'), 1)];
$$;

CREATE OR REPLACE FUNCTION storage.extension(name text)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT reverse(split_part(reverse(storage.filename(name)), '.', 1));
$$;
