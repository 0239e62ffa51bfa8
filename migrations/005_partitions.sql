-- user_logins partitioned by create_date, one partition a day, and what keeps it cheap to keep
-- data for a fixed time (see docs/privacy.md, "How long what is kept").
--
-- Why partitions: a consumer app writes tens of millions of rows a day. Dropping a day's
-- partition ends its rows, its index entries and its share of vacuum at once; the same with one
-- table is a DELETE of millions of rows, then the vacuum of them, every day.
--
-- Why by day: retention is counted in days, and a day of a large app is a partition of a few GB,
-- a size vacuum and index builds handle well. A small deployment gets one small table a day,
-- which costs it nothing noticeable (docs/benchmarks.md measures both layouts).
--
-- Why the project's own SQL rather than pg_partman: what is needed is three short functions
-- (create days ahead, drop days past, move early arrivals out of the default partition), they
-- run anywhere PostgreSQL 13+ does, with no extension to install (CREATE EXTENSION needs a
-- superuser, or rds_superuser) and no background worker; pg_cron, a scheduled task, or
-- `login-etl-pii partitions` calls them.

-- The name of a day's partition.
CREATE OR REPLACE FUNCTION login_etl_partition_name(day date) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT 'user_logins_p' || to_char(day, 'YYYYMMDD') $$;

-- Every lock a change of partitions needs, first and at once: the parent and with it every
-- partition. A writer locks user_logins and then its partitions (the lookup of stored ids reads
-- them, the insert writes one), so a change that took a partition first (the default one, to
-- move rows out of it) and the parent after (to attach, or to drop) deadlocked with writers now
-- and then. Writers wait the few milliseconds the change takes. Both functions below call it,
-- so whoever calls them (the daily job, pg_cron, an operator in psql) is safe.
CREATE OR REPLACE FUNCTION login_etl_lock_for_partitioning() RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    LOCK TABLE user_logins IN ACCESS EXCLUSIVE MODE;
END
$$;

-- Creates the partitions of the days from first_day to last_day that do not exist yet; returns
-- how many it created. Rows of such a day that arrived before its partition wait in the default
-- partition, and PostgreSQL refuses the new partition while they are there: they move first, in
-- the same transaction, so none is ever missing or there twice. Writers of the default partition
-- wait meanwhile (a brief lock; docs/benchmarks.md, "Partitions").
CREATE OR REPLACE FUNCTION login_etl_create_partitions(first_day date, last_day date)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    day date;
    partition text;
    created integer := 0;
BEGIN
    PERFORM login_etl_lock_for_partitioning();
    FOR day IN SELECT d::date FROM generate_series(first_day, last_day, interval '1 day') AS d LOOP
        partition := login_etl_partition_name(day);
        CONTINUE WHEN to_regclass(quote_ident(partition)) IS NOT NULL;
        EXECUTE format('CREATE TABLE %I (LIKE user_logins INCLUDING DEFAULTS)', partition);
        -- No writer may add a row of the day to the default partition between the move and
        -- the attach (the attach would then refuse): hold the default partition until commit.
        LOCK TABLE user_logins_default IN ACCESS EXCLUSIVE MODE;
        EXECUTE format(
            'WITH moved AS (DELETE FROM user_logins_default WHERE create_date = $1 RETURNING *)
             INSERT INTO %I SELECT * FROM moved', partition) USING day;
        EXECUTE format('ALTER TABLE user_logins ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       partition, day, day + 1);
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;

-- Ends every row dated before `cutoff`: drops the partitions of those days (whole tables, no
-- row-by-row DELETE), deletes such rows from the default partition, and deletes what exists only
-- because of them: the vault entries no remaining row uses (their last_seen is before the
-- cutoff) and the fallback dates of those messages. Rows without a date (only rows of the
-- original take-home table can lack one) are kept: their age is unknown. Returns what it ended.
CREATE OR REPLACE FUNCTION login_etl_drop_before(cutoff date,
    OUT partitions_dropped integer, OUT default_rows_deleted bigint,
    OUT vault_entries_deleted bigint)
LANGUAGE plpgsql
AS $$
DECLARE
    partition text;
BEGIN
    PERFORM login_etl_lock_for_partitioning();
    partitions_dropped := 0;
    FOR partition IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'user_logins'::regclass
          AND c.relname ~ '^user_logins_p[0-9]{8}$'
          AND to_date(substr(c.relname, 14), 'YYYYMMDD') < cutoff
        ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE %I', partition);
        partitions_dropped := partitions_dropped + 1;
    END LOOP;
    DELETE FROM user_logins_default WHERE create_date < cutoff;
    GET DIAGNOSTICS default_rows_deleted = ROW_COUNT;
    DELETE FROM user_logins_fallback_dates WHERE create_date < cutoff;
    DELETE FROM pii_vault WHERE last_seen < cutoff;
    GET DIAGNOSTICS vault_entries_deleted = ROW_COUNT;
END
$$;

-- The daily job: keep `retain_days` days (today, UTC, and the days before it) and have the
-- partitions of the next `days_ahead` days ready. Schedule it (pg_cron, or `login-etl-pii
-- partitions`); should it not run, rows still land (in the default partition) and the next run
-- moves them into their day.
CREATE OR REPLACE FUNCTION login_etl_maintain_partitions(retain_days integer, days_ahead integer,
    OUT partitions_created integer, OUT partitions_dropped integer,
    OUT default_rows_deleted bigint, OUT vault_entries_deleted bigint)
LANGUAGE plpgsql
AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
BEGIN
    IF retain_days IS NULL OR retain_days < 1 THEN
        RAISE EXCEPTION 'retain_days must be at least 1 (today is kept), got %', retain_days;
    END IF;
    -- Dropping a partition waits for every query on user_logins, and the writers queue behind
    -- the waiting drop: behind an analyst's hour-long query, ingestion would stall for an hour.
    -- Give up instead (nothing changes; run the job again later).
    PERFORM set_config('lock_timeout', '5s', true);
    SELECT d.partitions_dropped, d.default_rows_deleted, d.vault_entries_deleted
    INTO partitions_dropped, default_rows_deleted, vault_entries_deleted
    FROM login_etl_drop_before(today - (retain_days - 1)) AS d;
    partitions_created := login_etl_create_partitions(today, today + greatest(days_ahead, 0));
END
$$;

-- Idempotency without SentTimestamp. A row's create_date comes from SentTimestamp, so a
-- redelivery lands in the same day and the unique index on (message_id, create_date) finds it.
-- A message without the attribute (hand-written events; SQS always sets it) is dated the day it
-- is stored, so a redelivery on another day would be a second row in another partition. The
-- write first claims its messageId here, where it is unique on its own, and inserts the row only
-- if the claim is new. Only such messages are claimed, so the table stays small.
CREATE TABLE IF NOT EXISTS user_logins_fallback_dates (
    message_id  varchar(128) PRIMARY KEY,
    create_date date NOT NULL
);

-- Which vault entries retention may delete: last_seen is the latest create_date of the rows
-- that use the entry, kept up by each write, so entries no remaining row uses are found without
-- scanning user_logins. The default serves writers of an older version during an upgrade.
ALTER TABLE pii_vault ADD COLUMN IF NOT EXISTS last_seen date;
ALTER TABLE pii_vault ALTER COLUMN last_seen SET DEFAULT CURRENT_DATE;
CREATE INDEX IF NOT EXISTS pii_vault_last_seen ON pii_vault (last_seen);

-- The upgrade: an unpartitioned user_logins (the take-home's table, or this project's before
-- this migration) becomes the partitioned one, with its rows, in this transaction. The table is
-- locked meanwhile, so writers wait (and time out into retries), never fail a message: apply it
-- with psql before deploying the version that needs it (docs/database.md, "Upgrading to partitions").
DO $$
DECLARE
    grant_row record;
BEGIN
    IF EXISTS (SELECT FROM pg_partitioned_table WHERE partrelid = 'user_logins'::regclass) THEN
        RETURN;
    END IF;
    LOCK TABLE user_logins IN ACCESS EXCLUSIVE MODE;
    ALTER TABLE user_logins RENAME TO user_logins_unpartitioned;
    ALTER INDEX IF EXISTS user_logins_message_id_key RENAME TO user_logins_unpartitioned_message_id_key;
    -- Every column as it is, in its order, added ones included; no index (the unique index on
    -- message_id alone cannot exist on a partitioned table: it must include create_date).
    CREATE TABLE user_logins (LIKE user_logins_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
        PARTITION BY RANGE (create_date);
    -- The same name as 001's index, so that 001 applied again finds it and creates nothing.
    CREATE UNIQUE INDEX user_logins_message_id_key ON user_logins (message_id, create_date);
    -- Rows of a day without a partition yet, and rows without a date.
    CREATE TABLE user_logins_default PARTITION OF user_logins DEFAULT;
    -- The grants, so the function and the analysts keep what they had.
    FOR grant_row IN
        SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                      ELSE quote_ident(pg_get_userbyid(a.grantee)) END AS grantee
        FROM pg_class c, aclexplode(c.relacl) AS a
        WHERE c.oid = 'user_logins_unpartitioned'::regclass
          AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON user_logins TO %s', grant_row.privilege_type, grant_row.grantee);
    END LOOP;
    PERFORM login_etl_create_partitions(day, day)
    FROM (SELECT DISTINCT create_date AS day FROM user_logins_unpartitioned
          WHERE create_date IS NOT NULL) AS days;
    PERFORM login_etl_create_partitions((now() AT TIME ZONE 'UTC')::date,
                                        (now() AT TIME ZONE 'UTC')::date + 7);
    INSERT INTO user_logins SELECT * FROM user_logins_unpartitioned;
    -- The view keeps its grants when replaced, not when dropped and created.
    CREATE OR REPLACE VIEW user_logins_readable AS
    SELECT user_id, device_type, masked_ip, masked_device_id, locale,
           app_version_text(app_version) AS app_version, create_date, message_id
    FROM user_logins;
    DROP TABLE user_logins_unpartitioned;
    -- Vault entries written before last_seen existed: the latest date of a row that uses them
    -- (one pass over the rows), or the day they were sealed when no dated row does.
    UPDATE pii_vault v SET last_seen = coalesce(used.last_seen, v.created_at::date)
    FROM pii_vault e
    LEFT JOIN (SELECT masked, max(create_date) AS last_seen
               FROM (SELECT masked_ip, create_date FROM user_logins
                     UNION ALL
                     SELECT masked_device_id, create_date FROM user_logins) AS r(masked, create_date)
               GROUP BY masked) AS used ON used.masked = e.masked_value
    WHERE v.masked_value = e.masked_value AND v.last_seen IS NULL;
END
$$;
