-- Rollback of migrations/0001_multi_app_identity.sql: back to the pre-migration shape
-- (schema/prisma-before.sql), the seed's «Rollback план» for the database.
--
-- !!! DESTRUCTIVE. It DELETES EVERY ADMIN SESSION (every sessions row whose
-- !!! application_context is not 'web') and ALL PERMISSIONS (the table user_permissions is
-- !!! dropped with its rows). Take a dump first (`pg_dump`), as the seed says.
--
-- Admin sessions are deleted, not kept: once the column is gone nothing would tell them apart
-- from web sessions, and a pre-migration app would accept an admin session as a web one.
-- Web sessions and every users row are kept unchanged (users.session_id is a plain column,
-- not a foreign key: a value that named a deleted admin session is left as it is).
--
-- It also deletes the row of version 1 from `_sqlx_migrations`, so that
-- `tower_app_sessions::store::postgres::migrate` applies the migration again on the next start.
-- The enum "UserRole" is left alone (the pre-migration shape has all four labels already).
--
-- This file lives in a subdirectory, which sqlx::migrate! ignores (it reads only the files
-- directly in migrations/). Run it by hand, in one transaction:
--     psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f migrations/rollback/0001_multi_app_identity.down.sql
-- Every statement is idempotent: running it on an already rolled-back database changes nothing.

BEGIN;

-- The opt-in notification triggers (migrations/notifications/install.sql), if installed.
DROP FUNCTION IF EXISTS "tower_app_sessions_notify"() CASCADE;

DROP TABLE IF EXISTS "user_permissions";

DROP INDEX IF EXISTS "sessions_application_context_user_id_idx";

DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = '"sessions"'::regclass AND attname = 'application_context'
          AND NOT attisdropped
    ) THEN
        DELETE FROM "sessions" WHERE "application_context"::text <> 'web';
    END IF;
END
$$;

ALTER TABLE "sessions" DROP COLUMN IF EXISTS "application_context";

DROP TYPE IF EXISTS "ApplicationType";

DO $$
BEGIN
    IF to_regclass('"_sqlx_migrations"') IS NOT NULL THEN
        DELETE FROM "_sqlx_migrations" WHERE version = 1;
    END IF;
END
$$;

COMMIT;
