-- Multi-app identity: the Prisma tables `users`, `sessions`, `user_permissions` in the exact
-- shape of `prisma migrate` from the seed's schema (see schema/prisma-target.sql): names,
-- types, defaults, NOT NULL, enum labels and their order, indexes, keys. Nothing more, nothing
-- less on these tables, so `prisma migrate` sees no drift.
--
-- Every statement is idempotent, so this one migration serves three starting points:
--   * an empty database                  -> everything is created;
--   * a pre-migration database (before)  -> upgraded in place, every row kept: the enum
--     "ApplicationType", sessions.application_context (existing rows read 'web'), its index,
--     and the table user_permissions are added;
--   * a database Prisma already migrated -> nothing changes.
-- Also an identity.prisma database whose enums lack labels ("ApplicationType" with only 'web',
-- "UserRole" with only 'user'/'admin'): the missing labels are added in the target order.
--
-- Runs in one transaction (sqlx). Labels added here by ALTER TYPE ... ADD VALUE are not used
-- later in this file (PostgreSQL refuses a new label before commit). Adding
-- sessions.application_context with a constant default is a catalog-only change on
-- PostgreSQL >= 11 (no table rewrite); building its index takes a SHARE lock on sessions
-- (writes wait) for the duration of the build.
--
-- Once released, this file must never change: sqlx stores its checksum. Changes go in a new file.

CREATE EXTENSION IF NOT EXISTS pgcrypto; -- gen_random_uuid() on PostgreSQL < 13

-- Enums ------------------------------------------------------------------------------------------

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE t.typname = 'UserRole' AND n.nspname = current_schema()
    ) THEN
        CREATE TYPE "UserRole" AS ENUM ('user', 'admin', 'operator', 'support');
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE t.typname = 'ApplicationType' AND n.nspname = current_schema()
    ) THEN
        CREATE TYPE "ApplicationType" AS ENUM ('web', 'admin');
    END IF;
END
$$;

-- identity.prisma declares `enum UserRole { USER ADMIN }` and `enum ApplicationType { WEB }`:
-- complete them in the target order. No-ops (a NOTICE) when the label exists.
ALTER TYPE "UserRole" ADD VALUE IF NOT EXISTS 'admin' AFTER 'user';
ALTER TYPE "UserRole" ADD VALUE IF NOT EXISTS 'operator' AFTER 'admin';
ALTER TYPE "UserRole" ADD VALUE IF NOT EXISTS 'support' AFTER 'operator';
ALTER TYPE "ApplicationType" ADD VALUE IF NOT EXISTS 'admin' AFTER 'web';

-- Tables -----------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS "users" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "email" VARCHAR(255) NOT NULL,
    "hashed_password" TEXT,
    "is_verified" BOOLEAN NOT NULL DEFAULT false,
    "role" "UserRole" NOT NULL DEFAULT 'user',
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_login_at" TIMESTAMPTZ(6),
    "session_id" VARCHAR(255),

    CONSTRAINT "users_pkey" PRIMARY KEY ("id")
);

CREATE TABLE IF NOT EXISTS "sessions" (
    "id" VARCHAR(255) NOT NULL,
    "user_id" UUID NOT NULL,
    "data" JSONB,
    "expires_at" TIMESTAMPTZ(6) NOT NULL,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_activity" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "ip_address" INET,
    "user_agent" TEXT,
    "revoked" BOOLEAN NOT NULL DEFAULT false,
    "revoked_at" TIMESTAMPTZ(6),
    "application_context" "ApplicationType" NOT NULL DEFAULT 'web',

    CONSTRAINT "sessions_pkey" PRIMARY KEY ("id")
);

-- A pre-migration `sessions` (the CREATE above skipped it): every existing row reads 'web'.
-- Constant default: stored once in the catalog, the table is not rewritten.
ALTER TABLE "sessions"
    ADD COLUMN IF NOT EXISTS "application_context" "ApplicationType" NOT NULL DEFAULT 'web';

CREATE TABLE IF NOT EXISTS "user_permissions" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "user_id" UUID NOT NULL,
    "permission" VARCHAR(100) NOT NULL,
    "application_context" "ApplicationType" NOT NULL DEFAULT 'web',
    "granted_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "granted_by" UUID,
    "expires_at" TIMESTAMPTZ(6),

    CONSTRAINT "user_permissions_pkey" PRIMARY KEY ("id")
);

-- Indexes (Prisma's names) -----------------------------------------------------------------------

CREATE UNIQUE INDEX IF NOT EXISTS "users_email_key" ON "users"("email");
CREATE INDEX IF NOT EXISTS "users_email_idx" ON "users"("email");
CREATE INDEX IF NOT EXISTS "users_session_id_idx" ON "users"("session_id");
CREATE INDEX IF NOT EXISTS "users_role_idx" ON "users"("role");
CREATE INDEX IF NOT EXISTS "users_created_at_idx" ON "users"("created_at");
CREATE INDEX IF NOT EXISTS "sessions_user_id_idx" ON "sessions"("user_id");
CREATE INDEX IF NOT EXISTS "sessions_application_context_user_id_idx" ON "sessions"("application_context", "user_id");
CREATE INDEX IF NOT EXISTS "sessions_expires_at_idx" ON "sessions"("expires_at");
CREATE INDEX IF NOT EXISTS "sessions_created_at_idx" ON "sessions"("created_at");
CREATE INDEX IF NOT EXISTS "sessions_revoked_idx" ON "sessions"("revoked");
CREATE UNIQUE INDEX IF NOT EXISTS "user_permissions_user_id_permission_application_context_key" ON "user_permissions"("user_id", "permission", "application_context");
CREATE INDEX IF NOT EXISTS "user_permissions_application_context_user_id_idx" ON "user_permissions"("application_context", "user_id");
CREATE INDEX IF NOT EXISTS "user_permissions_permission_idx" ON "user_permissions"("permission");

-- Foreign keys -----------------------------------------------------------------------------------

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'sessions_user_id_fkey' AND conrelid = '"sessions"'::regclass
    ) THEN
        ALTER TABLE "sessions" ADD CONSTRAINT "sessions_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("id") ON DELETE CASCADE ON UPDATE CASCADE;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'user_permissions_user_id_fkey' AND conrelid = '"user_permissions"'::regclass
    ) THEN
        ALTER TABLE "user_permissions" ADD CONSTRAINT "user_permissions_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("id") ON DELETE CASCADE ON UPDATE CASCADE;
    END IF;
END
$$;
