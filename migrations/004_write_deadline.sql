-- The server-side deadline of one write. The function calls this at the start of each write's
-- transaction with the milliseconds left before its invocation deadline, so a statement still
-- queued behind a lock when the function gives up is aborted by the server instead of
-- committing later.
--
-- It also has the server check every 100 ms, while the write runs, that the client is still
-- there (PostgreSQL 14 and later; older servers skip it): a write whose client went away (an
-- environment that gave up at SIGTERM, a connection dropped at the deadline, or PgBouncer closing
-- the server connection of a client that left) ends then, even while it waits for a lock, instead
-- of running on and committing behind the function's back. No cancel request is needed, which
-- matters behind PgBouncer 1.18: one cut short crashes it (docs/reliability.md, "Deadlines").
--
-- A function rather than `SET LOCAL statement_timeout`: RDS Proxy pins a client session to one
-- database connection when it sees SET (or set_config) in the SQL it forwards, and does not look
-- inside functions. The values are transaction-local (set_config's third argument), so nothing
-- outlives the write's transaction: behind PgBouncer in transaction mode no other client sees it.
CREATE OR REPLACE FUNCTION login_etl_write_deadline(milliseconds integer) RETURNS void
LANGUAGE sql VOLATILE
AS $$
SELECT set_config('client_connection_check_interval', '100', true)
WHERE current_setting('server_version_num')::integer >= 140000;
SELECT set_config('statement_timeout', milliseconds::text, true);
$$;
