-- The take-home's user_logins table, exactly its original columns, so the function also works
-- against a table that was created by hand from the original spec.
CREATE TABLE IF NOT EXISTS user_logins (
    user_id          varchar(128),
    device_type      varchar(32),
    masked_ip        varchar(256),
    masked_device_id varchar(256),
    locale           varchar(32),
    app_version      integer,
    create_date      date
);

-- Idempotency: SQS delivers at least once, so the same messageId can arrive twice. Rows written
-- before this migration (the original table) keep message_id NULL, which a unique index allows.
ALTER TABLE user_logins ADD COLUMN IF NOT EXISTS message_id varchar(128);
-- Only if missing: once 005 has partitioned the table, this index name is its unique index on
-- (message_id, create_date), and PostgreSQL refuses even to consider one on message_id alone.
DO $$
BEGIN
    IF to_regclass('user_logins_message_id_key') IS NULL THEN
        CREATE UNIQUE INDEX user_logins_message_id_key ON user_logins (message_id);
    END IF;
END
$$;
