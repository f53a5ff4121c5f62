-- The web application's own database (DATABASE_WEB_URL), as `prisma migrate` creates it from
-- the seed's web.prisma (WebSession, WebUserCache). Idempotent: a database Prisma already
-- created is left as it is.

CREATE TABLE IF NOT EXISTS "web_sessions" (
    "id" VARCHAR(255) NOT NULL,
    "user_id" UUID NOT NULL,
    "data" JSONB,
    "preferences" JSONB,
    "theme" VARCHAR(20),
    "language" VARCHAR(10),
    "expires_at" TIMESTAMPTZ(6) NOT NULL,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_activity" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "web_sessions_pkey" PRIMARY KEY ("id")
);

CREATE TABLE IF NOT EXISTS "web_user_cache" (
    "user_id" UUID NOT NULL,
    "data" JSONB NOT NULL,
    "updated_at" TIMESTAMPTZ(6) NOT NULL,

    CONSTRAINT "web_user_cache_pkey" PRIMARY KEY ("user_id")
);

CREATE INDEX IF NOT EXISTS "web_sessions_user_id_idx" ON "web_sessions"("user_id");
CREATE INDEX IF NOT EXISTS "web_sessions_expires_at_idx" ON "web_sessions"("expires_at");
