-- The server-side deadline of one write. The function calls this at the start of each write's
-- transaction with the milliseconds left before its invocation deadline, so a statement still
-- queued behind a lock when the function gives up is aborted by the server instead of
-- committing later.
--
-- A function rather than `SET LOCAL statement_timeout`: RDS Proxy pins a client session to one
-- database connection when it sees SET (or set_config) in the SQL it forwards, and does not look
-- inside functions. The value is transaction-local (set_config's third argument), so nothing
-- outlives the write's transaction: behind PgBouncer in transaction mode no other client sees it.
CREATE OR REPLACE FUNCTION login_etl_write_deadline(milliseconds integer) RETURNS void
LANGUAGE sql VOLATILE
AS $$ SELECT set_config('statement_timeout', milliseconds::text, true) $$;
