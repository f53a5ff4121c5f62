-- The health check of the notifications (run by tower-app-sessions on its listening
-- connection with every heartbeat): true when every trigger install.sql creates is in place,
-- each exactly as install.sql makes it:
--   * by its name, on the table the crate's own queries name (`sessions`, `users`,
--     `user_permissions`, resolved through the search path as those queries resolve them),
--     never a temporary table;
--   * for the events install.sql gives it (pg_trigger.tgtype: 1 row, 4 insert, 8 delete,
--     16 update, 32 truncate; no "before" or "instead of" bit);
--   * enabled;
--   * calling, by OID, the function "tower_app_sessions_notify"() of that table's schema
--     (functions are never looked up in temporary schemas).
-- Triggers anywhere else, whatever function they call, change nothing: a role with only the
-- default TEMP privilege can neither complete the set nor spoil it.
-- Keep the list in step with install.sql.
WITH expected(trigger_name, table_name, events) AS (
    VALUES
        ('tower_app_sessions_sessions_update', 'sessions', 17),
        ('tower_app_sessions_sessions_delete', 'sessions', 9),
        ('tower_app_sessions_sessions_truncate', 'sessions', 32),
        ('tower_app_sessions_users_update', 'users', 17),
        ('tower_app_sessions_users_delete', 'users', 9),
        ('tower_app_sessions_users_truncate', 'users', 32),
        ('tower_app_sessions_permissions_change', 'user_permissions', 29),
        ('tower_app_sessions_permissions_truncate', 'user_permissions', 32)
),
notify AS (
    SELECT p.oid, p.pronamespace
    FROM pg_proc p
    WHERE p.oid = to_regprocedure('"tower_app_sessions_notify"()')
),
present AS (
    SELECT e.trigger_name
    FROM expected e
    JOIN pg_class c ON c.oid = to_regclass(quote_ident(e.table_name))
    JOIN pg_trigger t ON t.tgrelid = c.oid AND t.tgname = e.trigger_name
    JOIN notify f ON f.oid = t.tgfoid AND f.pronamespace = c.relnamespace
    WHERE c.relpersistence <> 't'
      AND t.tgtype = e.events
      AND t.tgenabled <> 'D'
      AND NOT t.tgisinternal
)
SELECT (SELECT count(*) FROM present) = (SELECT count(*) FROM expected)
