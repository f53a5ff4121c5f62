-- Opt-in PostgreSQL notifications for tower-app-sessions (not a migration: sqlx::migrate!
-- reads only the files directly in migrations/, and these objects are not part of the Prisma
-- schema). Installed by `tower_app_sessions::store::postgres::install_notifications`, removed
-- by uninstall.sql and by migrations/rollback/0001_multi_app_identity.down.sql.
--
-- Every change that must end a cached or trusted session, made by any process (the
-- TypeScript admin panel's SQL included), is sent on the channel "tower_app_sessions":
--   s:<application_context>:<id>   a sessions row revoked, deleted, moved, its data changed or
--                                  its expiry shortened (a slide that only extends it is not sent)
--   u:<user id>                    a users row's role, email, password hash or verification
--                                  changed, or it was deleted; any change of user_permissions
--   all                            a table was truncated
-- Idempotent: running it again replaces the function and the triggers.
-- The health check, check.sql, lists these triggers exactly: keep the two in step.

CREATE OR REPLACE FUNCTION "tower_app_sessions_notify"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('tower_app_sessions', 'all');
    ELSIF TG_TABLE_NAME = 'sessions' THEN
        PERFORM pg_notify('tower_app_sessions', 's:' || OLD.application_context::text || ':' || OLD.id);
    ELSIF TG_TABLE_NAME = 'users' THEN
        PERFORM pg_notify('tower_app_sessions', 'u:' || OLD.id::text);
    ELSIF TG_OP = 'INSERT' THEN
        PERFORM pg_notify('tower_app_sessions', 'u:' || NEW.user_id::text);
    ELSE
        PERFORM pg_notify('tower_app_sessions', 'u:' || OLD.user_id::text);
        IF TG_OP = 'UPDATE' AND NEW.user_id IS DISTINCT FROM OLD.user_id THEN
            PERFORM pg_notify('tower_app_sessions', 'u:' || NEW.user_id::text);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS "tower_app_sessions_sessions_update" ON "sessions";
CREATE TRIGGER "tower_app_sessions_sessions_update" AFTER UPDATE ON "sessions"
    FOR EACH ROW WHEN (
        OLD.revoked IS DISTINCT FROM NEW.revoked
        OR OLD.id IS DISTINCT FROM NEW.id
        OR OLD.user_id IS DISTINCT FROM NEW.user_id
        OR OLD.application_context IS DISTINCT FROM NEW.application_context
        OR OLD.data IS DISTINCT FROM NEW.data
        OR NEW.expires_at < OLD.expires_at
    )
    EXECUTE FUNCTION "tower_app_sessions_notify"();
DROP TRIGGER IF EXISTS "tower_app_sessions_sessions_delete" ON "sessions";
-- A purge of rows already revoked (notified then) or expired sends nothing.
CREATE TRIGGER "tower_app_sessions_sessions_delete" AFTER DELETE ON "sessions"
    FOR EACH ROW WHEN (NOT OLD.revoked AND OLD.expires_at > now())
    EXECUTE FUNCTION "tower_app_sessions_notify"();
DROP TRIGGER IF EXISTS "tower_app_sessions_sessions_truncate" ON "sessions";
CREATE TRIGGER "tower_app_sessions_sessions_truncate" AFTER TRUNCATE ON "sessions"
    FOR EACH STATEMENT EXECUTE FUNCTION "tower_app_sessions_notify"();

DROP TRIGGER IF EXISTS "tower_app_sessions_users_update" ON "users";
CREATE TRIGGER "tower_app_sessions_users_update" AFTER UPDATE ON "users"
    FOR EACH ROW WHEN (
        OLD.role IS DISTINCT FROM NEW.role
        OR OLD.email IS DISTINCT FROM NEW.email
        OR OLD.hashed_password IS DISTINCT FROM NEW.hashed_password
        OR OLD.is_verified IS DISTINCT FROM NEW.is_verified
        OR OLD.id IS DISTINCT FROM NEW.id
    )
    EXECUTE FUNCTION "tower_app_sessions_notify"();
DROP TRIGGER IF EXISTS "tower_app_sessions_users_delete" ON "users";
CREATE TRIGGER "tower_app_sessions_users_delete" AFTER DELETE ON "users"
    FOR EACH ROW EXECUTE FUNCTION "tower_app_sessions_notify"();
DROP TRIGGER IF EXISTS "tower_app_sessions_users_truncate" ON "users";
CREATE TRIGGER "tower_app_sessions_users_truncate" AFTER TRUNCATE ON "users"
    FOR EACH STATEMENT EXECUTE FUNCTION "tower_app_sessions_notify"();

DROP TRIGGER IF EXISTS "tower_app_sessions_permissions_change" ON "user_permissions";
CREATE TRIGGER "tower_app_sessions_permissions_change" AFTER INSERT OR UPDATE OR DELETE ON "user_permissions"
    FOR EACH ROW EXECUTE FUNCTION "tower_app_sessions_notify"();
DROP TRIGGER IF EXISTS "tower_app_sessions_permissions_truncate" ON "user_permissions";
CREATE TRIGGER "tower_app_sessions_permissions_truncate" AFTER TRUNCATE ON "user_permissions"
    FOR EACH STATEMENT EXECUTE FUNCTION "tower_app_sessions_notify"();
