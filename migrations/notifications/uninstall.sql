-- Removes what install.sql created: the function and, with it (CASCADE), its triggers on
-- sessions, users and user_permissions. Rows are not touched. Idempotent.
DROP FUNCTION IF EXISTS "tower_app_sessions_notify"() CASCADE;
