//! The SQL the function sends, and the migrations that make the schema it needs.

use tokio_postgres::types::Type;

/// The migrations, in the order they are applied (file-name order).
pub const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/001_user_logins.sql"),
    include_str!("../../migrations/002_app_version_text.sql"),
    include_str!("../../migrations/003_pii_vault.sql"),
    include_str!("../../migrations/004_write_deadline.sql"),
    include_str!("../../migrations/005_partitions.sql"),
];

/// The migrations as one transaction, under an advisory lock so that concurrent cold starts do
/// not race on `CREATE TABLE`. Each file is safe to apply twice.
pub(super) fn migration_script() -> String {
    let mut script = String::from("BEGIN; SELECT pg_advisory_xact_lock(4242424242);\n");
    for sql in MIGRATIONS {
        script.push_str(sql);
        script.push('\n');
    }
    script.push_str("COMMIT;");
    script
}

/// Opens a write's transaction and sets the server's deadline for it (migration 004): the
/// statements after it in the transaction are aborted once `milliseconds` have passed.
pub(super) fn begin_with_deadline(milliseconds: u128) -> String {
    format!("BEGIN; SELECT login_etl_write_deadline({milliseconds})")
}

/// The row insert, shared by both statements below (macros, so `concat!` can join literals).
/// The batch travels as one array per column and `unnest` turns them back into rows: one round
/// trip. `ON CONFLICT (message_id, create_date) DO NOTHING` makes a redelivered message a
/// success instead of a second row (a redelivery has the same SentTimestamp, so the same date and
/// partition), and the command tag counts only the new rows.
///
/// A row whose date fell back to the day it is stored ($10, no SentTimestamp) is inserted only if
/// `claimed` claimed its messageId: a redelivery on another day finds the claim (migration 005).
///
/// Rows go in messageId order, the global lock order: two writers of overlapping batches (SQS
/// delivers a message to two instances at once) then wait on each other's first shared id
/// instead of each holding one the other needs, which is a deadlock.
macro_rules! insert_rows {
    () => {
        "claimed AS (
    INSERT INTO user_logins_fallback_dates (message_id, create_date)
    SELECT m, c FROM unnest($1::varchar[], $8::date[], $10::bool[]) AS f(m, c, fallback)
    WHERE fallback
    ORDER BY m
    ON CONFLICT (message_id) DO NOTHING
    RETURNING message_id
)
INSERT INTO user_logins
    (message_id, user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date,
     mask_key_id)
SELECT m, u, d, ip, dev, l, v, c, $9::varchar
FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::varchar[],
            $6::varchar[], $7::int4[], $8::date[], $10::bool[]) AS t(m, u, d, ip, dev, l, v, c, fallback)
WHERE NOT fallback OR m IN (SELECT message_id FROM claimed)
ORDER BY m
ON CONFLICT (message_id, create_date) DO NOTHING"
    };
}

/// The batch insert when recovery is off: it touches only `user_logins` (and the claims of rows
/// without SentTimestamp), so the function's role needs no grant on the vault.
pub const INSERT_ROWS: &str = concat!("WITH ", insert_rows!());

/// The batch insert when recovery is on: the vault entries go in the same statement, hence the
/// same transaction, as their rows. They go in masked-value order: concurrent batches of the same
/// users insert the same vault entries, and would otherwise deadlock on them. PostgreSQL runs a
/// data-modifying CTE that the main query does not read after the main query, so every writer
/// locks rows first, then vault entries, each in one order.
///
/// `kept` locks the entries that exist already, in the same order (`FOR KEY SHARE`: writers do
/// not wait for each other, a deletion waits for them): `forget` (lifecycle.rs) locks an entry
/// before it checks that no row uses it, so it sees this write's rows once it may delete, and
/// cannot delete an entry a committed row needs. An entry `forget` deleted while this write waited
/// is not in `kept`, so the write inserts it again.
///
/// `last_seen`, the latest create_date of the rows using an entry, is what retention deletes
/// entries by (migration 005). An entry is updated only when a row of a later day uses it: once
/// a day at most, so concurrent writers of a common value (a carrier's NAT address) do not queue
/// on its entry.
pub const INSERT_ROWS_AND_VAULT: &str = concat!(
    "WITH entries AS (
    SELECT DISTINCT ON (masked) masked, kind, sealed, c
    FROM (SELECT masked, 'ip' AS kind, sealed, c
          FROM unnest($4::varchar[], $11::bytea[], $8::date[]) AS i(masked, sealed, c)
          UNION ALL
          SELECT masked, 'device_id', sealed, c
          FROM unnest($5::varchar[], $12::bytea[], $8::date[]) AS d(masked, sealed, c)
         ) AS all_entries
    WHERE sealed IS NOT NULL
    ORDER BY masked, c DESC
),
kept AS (
    SELECT v.masked_value FROM pii_vault v
    WHERE v.masked_value IN (SELECT masked FROM entries)
    ORDER BY v.masked_value
    FOR KEY SHARE
),
vault AS (
    INSERT INTO pii_vault (masked_value, kind, key_id, ciphertext, last_seen)
    SELECT masked, kind, $13::varchar, sealed, c FROM entries
    WHERE masked NOT IN (SELECT masked_value FROM kept)
    ORDER BY masked
    ON CONFLICT (masked_value) DO NOTHING
),
vault_seen AS (
    UPDATE pii_vault v SET last_seen = e.c FROM entries e
    WHERE v.masked_value = e.masked AND v.last_seen < e.c
),
",
    insert_rows!()
);

/// The parameter types of `INSERT_ROWS_AND_VAULT`, for sending it unnamed (`execute_typed`): the
/// rows' ($1 to $10), then the vault's ($11 to $13).
pub const INSERT_ROWS_AND_VAULT_TYPES: &[Type] = &[
    Type::VARCHAR_ARRAY,
    Type::VARCHAR_ARRAY,
    Type::VARCHAR_ARRAY,
    Type::VARCHAR_ARRAY,
    Type::VARCHAR_ARRAY,
    Type::VARCHAR_ARRAY,
    Type::INT4_ARRAY,
    Type::DATE_ARRAY,
    Type::VARCHAR,
    Type::BOOL_ARRAY,
    Type::BYTEA_ARRAY,
    Type::BYTEA_ARRAY,
    Type::VARCHAR,
];

/// The parameter types of `INSERT_ROWS`: the rows' of the above.
pub const INSERT_ROWS_TYPES: &[Type] = INSERT_ROWS_AND_VAULT_TYPES.split_at(10).0;

/// Which of the (id, date) pairs are stored already. One index lookup per id whatever the table's
/// statistics (a generic plan of `= ANY($1)` can fall back to a sequential scan that compares
/// every row with every id), in the one partition of its date (pruned at run time).
pub const STORED_IDS: &str = "\
SELECT i.id FROM unnest($1::varchar[], $2::date[]) AS i(id, day)
CROSS JOIN LATERAL (SELECT FROM user_logins t WHERE t.message_id = i.id AND t.create_date = i.day
                    LIMIT 1) AS stored";

/// The columns the COPY writes, in the order of `COPY_COLUMN_TYPES` and `copy_values`.
macro_rules! copy_columns {
    () => {
        "message_id, user_id, device_type, masked_ip, masked_device_id, locale, app_version, \
         create_date, mask_key_id"
    };
}

/// The columns the COPY writes (the benchmark's COPY baseline writes the same).
pub const COPY_COLUMNS: &str = copy_columns!();

/// The binary COPY of new rows.
pub const COPY_ROWS: &str = concat!(
    "COPY user_logins (",
    copy_columns!(),
    ") FROM STDIN (FORMAT binary)"
);

/// The column types of `COPY_ROWS`, in its order.
pub const COPY_COLUMN_TYPES: [Type; 9] = [
    Type::VARCHAR,
    Type::VARCHAR,
    Type::VARCHAR,
    Type::VARCHAR,
    Type::VARCHAR,
    Type::VARCHAR,
    Type::INT4,
    Type::DATE,
    Type::VARCHAR,
];
