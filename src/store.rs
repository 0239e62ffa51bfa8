//! PostgreSQL: connect (TLS), reconnect, migrate, bulk insert, error classification.
//!
//! A small batch is written with one statement: the columns travel as arrays and `unnest` turns
//! them back into rows, one round trip. `ON CONFLICT (message_id) DO NOTHING` makes a redelivered
//! message a success instead of a second row, and the row count tells how many were new.
//! A large batch goes by binary COPY, which PostgreSQL loads about twice as fast as any INSERT
//! (BENCHMARKS.md): which redelivered ids are stored already is looked up in the same flight as
//! the COPY starts, and only the new rows are streamed. Should the COPY still hit the unique
//! index (a concurrent duplicate delivery), the batch goes by INSERT instead. The handler's
//! batches are planned while they stream (`write_planning`): the server ingests one row while
//! the client parses and masks the next, on the other core.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::ops::Range;
use std::time::Duration;

use native_tls::{Certificate, TlsConnector};
use postgres_native_tls::MakeTlsConnector;
use tokio::time::{timeout_at, Instant};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Statement};

use crate::batch::{Failure, KeyIds, LoginRow, Planner, FIFO_STOPPED};
use crate::config::{DatabaseConfig, SslMode};

/// The migrations, in the order they are applied (file-name order).
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "001_user_logins.sql",
        include_str!("../migrations/001_user_logins.sql"),
    ),
    (
        "002_app_version_text.sql",
        include_str!("../migrations/002_app_version_text.sql"),
    ),
    (
        "003_pii_vault.sql",
        include_str!("../migrations/003_pii_vault.sql"),
    ),
];

/// The row insert, shared by both statements below (a macro, so `concat!` can join literals).
/// Rows go in messageId order, the global lock order: two writers of overlapping batches (SQS
/// delivers a message to two instances at once) then wait on each other's first shared id
/// instead of each holding one the other needs, which is a deadlock.
macro_rules! insert_rows {
    () => {
        "INSERT INTO user_logins
    (message_id, user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date,
     mask_key_id)
SELECT m, u, d, ip, dev, l, v, c, $9::varchar
FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::varchar[],
            $6::varchar[], $7::int4[], $8::date[]) AS t(m, u, d, ip, dev, l, v, c)
ORDER BY m
ON CONFLICT (message_id) DO NOTHING"
    };
}

/// The batch insert when recovery is off: it touches only `user_logins`, so the function's role
/// needs no grant on the vault.
const INSERT_ROWS: &str = insert_rows!();

/// The batch insert when recovery is on: the vault entries go in the same statement, hence the
/// same transaction, as their rows. They go in masked-value order: concurrent batches of the same
/// users insert the same vault entries, and would otherwise deadlock on them. PostgreSQL runs a
/// data-modifying CTE that the main query does not read after the main query, so every writer
/// locks rows first, then vault entries, each in one order.
const INSERT_ROWS_AND_VAULT: &str = concat!(
    "WITH vault AS (
    INSERT INTO pii_vault (masked_value, kind, key_id, ciphertext)
    SELECT masked, kind, $12::varchar, sealed
    FROM (SELECT masked, 'ip' AS kind, sealed FROM unnest($4::varchar[], $10::bytea[]) AS i(masked, sealed)
          UNION ALL
          SELECT masked, 'device_id', sealed FROM unnest($5::varchar[], $11::bytea[]) AS d(masked, sealed)
         ) AS entries
    WHERE sealed IS NOT NULL
    ORDER BY masked
    ON CONFLICT (masked_value) DO NOTHING
)
",
    insert_rows!()
);

/// Batches of at least this many rows (without the vault) go by COPY: below it the COPY's extra
/// round trip costs more than its faster load saves (BENCHMARKS.md).
const COPY_FROM_ROWS: usize = 100;

/// Which of the ids are stored already. One index lookup per id whatever the table's statistics
/// (a generic plan of `= ANY($1)` can fall back to a sequential scan that compares every row
/// with every id).
const STORED_IDS: &str = "\
SELECT i.id FROM unnest($1::varchar[]) AS i(id)
CROSS JOIN LATERAL (SELECT FROM user_logins t WHERE t.message_id = i.id LIMIT 1) AS stored";

const COPY_ROWS: &str = "\
COPY user_logins (message_id, user_id, device_type, masked_ip, masked_device_id, locale,
                  app_version, create_date, mask_key_id)
FROM STDIN (FORMAT binary)";

/// The column types of COPY_ROWS, in its order (the COPY baseline in benches/ingest uses them too).
pub const COPY_TYPES: [Type; 9] = [
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

/// The statements of the COPY path, prepared on a connection's first large batch.
struct CopyStatements {
    stored_ids: Statement,
    copy: Statement,
}

/// Which of the two batch inserts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Insert {
    Rows,
    RowsAndVault,
}

impl Insert {
    fn for_keys(key_ids: &KeyIds) -> Self {
        if key_ids.vault.is_some() {
            Insert::RowsAndVault
        } else {
            Insert::Rows
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Insert::Rows => INSERT_ROWS,
            Insert::RowsAndVault => INSERT_ROWS_AND_VAULT,
        }
    }
}

/// Why the store could not do its job for the whole batch.
#[derive(Debug)]
pub enum StoreError {
    /// The database is unreachable or the connection broke: retry the batch later.
    Unavailable(String),
    /// The schema is missing or wrong: an operator must act.
    Schema(String),
    /// Anything else the database said that is not about one row's data.
    Database(String),
    /// TLS or certificate set-up failed.
    Tls(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(why) => write!(f, "database unavailable: {why}"),
            StoreError::Schema(why) => write!(f, "database schema not ready: {why}"),
            StoreError::Database(why) => write!(f, "database error: {why}"),
            StoreError::Tls(why) => write!(f, "TLS set-up failed: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// What one write did to each row.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WriteReport {
    pub inserted: usize,
    /// Rows whose message_id was already stored.
    pub already_stored: usize,
    /// Rows not committed: refused by the database for their data, or not written before the
    /// deadline (or, on FIFO queues, held back behind a refused row).
    pub failures: Vec<Failure>,
}

/// How a database error affects the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Caused by the data of some row in the statement (SQLSTATE classes 22 and 23).
    RowData,
    /// A deadlock or serialization failure (40P01, 40001): other writers, not an outage. The
    /// connection is fine; the same statement is tried again.
    Contention,
    /// Connection, resources, shutdown, the rest of class 40, a server that has become read-only
    /// (25006: a fail-over demoted it), or no SQLSTATE at all (I/O, closed connection): a new
    /// connection may succeed now, the batch later.
    Transient,
    /// Anything else (permissions, missing table, syntax): retrying will not help by itself.
    Fatal,
}

pub fn classify(error: &tokio_postgres::Error) -> ErrorKind {
    let Some(code) = error.code() else {
        return ErrorKind::Transient;
    };
    if code == &SqlState::T_R_DEADLOCK_DETECTED || code == &SqlState::T_R_SERIALIZATION_FAILURE {
        return ErrorKind::Contention;
    }
    if code == &SqlState::READ_ONLY_SQL_TRANSACTION {
        return ErrorKind::Transient;
    }
    match &code.code()[..2] {
        "22" | "23" => ErrorKind::RowData,
        "08" | "53" | "57" | "40" => ErrorKind::Transient,
        _ => ErrorKind::Fatal,
    }
}

/// A database error described without its message: PostgreSQL messages can quote row values
/// (`invalid input syntax for type integer: "..."`), and those may be personal data.
pub fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("SQLSTATE {}", db.code().code());
            if let Some(column) = db.column() {
                text.push_str(&format!(", column {column}"));
            }
            if let Some(constraint) = db.constraint() {
                text.push_str(&format!(", constraint {constraint}"));
            }
            text
        }
        None if error.is_closed() => "connection closed".into(),
        // Client-side errors (I/O, TLS, protocol) carry no row data.
        None => error.to_string(),
    }
}

/// The function's database: one connection per execution environment, reopened when it breaks.
pub struct Store {
    config: DatabaseConfig,
    tls: MakeTlsConnector,
    client: Option<Client>,
    /// The batch inserts, prepared once per connection (index: `Insert as usize`). Preparing
    /// one is also the schema check: it fails when a table, a column or the unique index on
    /// message_id is missing.
    prepared: [Option<Statement>; 2],
    copy: Option<CopyStatements>,
}

/// The longest we wait for a connection, so a dead host yields a retryable error well before
/// the invocation deadline rather than a timeout of the whole function.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Store {
    /// Opens the connection. `deadline` bounds the connect.
    pub async fn connect(config: DatabaseConfig, deadline: Instant) -> Result<Self, StoreError> {
        let tls = tls_connector(&config)?;
        let mut store = Store {
            config,
            tls,
            client: None,
            prepared: [None, None],
            copy: None,
        };
        store.client(deadline).await?;
        Ok(store)
    }

    /// Applies the embedded migrations, under an advisory lock so concurrent cold starts do not
    /// race on `CREATE TABLE`. Each file is safe to apply twice.
    pub async fn migrate(&mut self, deadline: Instant) -> Result<(), StoreError> {
        let mut script = String::from("BEGIN; SELECT pg_advisory_xact_lock(4242424242);\n");
        for (_, sql) in MIGRATIONS {
            script.push_str(sql);
            script.push('\n');
        }
        script.push_str("COMMIT;");
        let client = self.client(deadline).await?;
        let result = timeout_at(deadline, client.batch_execute(&script)).await;
        // A prepared insert may predate the schema it needs.
        self.prepared = [None, None];
        self.copy = None;
        match result {
            Err(_) => Err(StoreError::Unavailable(
                "migrations did not finish before the deadline".into(),
            )),
            Ok(Err(e)) => Err(StoreError::Database(format!(
                "applying migrations failed: {e}"
            ))),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Checks that the schema is in place by preparing the batch insert (with the vault when
    /// `with_vault`, i.e. when the function runs with RECOVERY_KEY).
    pub async fn check_schema(
        &mut self,
        deadline: Instant,
        with_vault: bool,
    ) -> Result<(), StoreError> {
        let insert = if with_vault {
            Insert::RowsAndVault
        } else {
            Insert::Rows
        };
        self.prepared(deadline, insert).await.map(|_| ())
    }

    /// The open client, reconnecting when there is none or it was closed.
    async fn client(&mut self, deadline: Instant) -> Result<&Client, StoreError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.disconnect();
        }
        if self.client.is_none() {
            self.client = Some(self.open(deadline).await?);
        }
        Ok(self.client.as_ref().expect("set above"))
    }

    /// The client with the insert prepared on it.
    async fn prepared(
        &mut self,
        deadline: Instant,
        insert: Insert,
    ) -> Result<(&Client, &Statement), StoreError> {
        self.client(deadline).await?;
        let slot = insert as usize;
        if self.prepared[slot].is_none() {
            let client = self.client.as_ref().expect("connected above");
            let statement = match timeout_at(deadline, client.prepare(insert.sql())).await {
                Err(_) => {
                    return Err(StoreError::Unavailable(
                        "prepare did not finish before the deadline".into(),
                    ))
                }
                Ok(Err(e)) => return Err(prepare_error(&e)),
                Ok(Ok(statement)) => statement,
            };
            self.prepared[slot] = Some(statement);
        }
        Ok((
            self.client.as_ref().expect("connected above"),
            self.prepared[slot].as_ref().expect("prepared above"),
        ))
    }

    /// Sends PostgreSQL a cancel request for whatever the connection is running, bounded so
    /// it fits in the margin kept before Lambda's deadline.
    async fn cancel_running_statement(&self) {
        let Some(client) = &self.client else { return };
        let token = client.cancel_token();
        match tokio::time::timeout(CANCEL_TIMEOUT, token.cancel_query(self.tls.clone())).await {
            Ok(Ok(())) => tracing::warn!("statement cancelled at the invocation deadline"),
            _ => tracing::warn!(
                "could not cancel the statement at the deadline; it may still commit"
            ),
        }
    }

    fn disconnect(&mut self) {
        self.client = None;
        self.prepared = [None, None];
        self.copy = None;
    }

    async fn open(&self, deadline: Instant) -> Result<Client, StoreError> {
        let connect_deadline = deadline.min(Instant::now() + CONNECT_TIMEOUT);
        let connecting = self.config.connection.connect(self.tls.clone());
        let (client, connection) = match timeout_at(connect_deadline, connecting).await {
            Err(_) => {
                return Err(StoreError::Unavailable(connect_message(
                    &self.config,
                    "no answer in time",
                )))
            }
            Ok(Err(e)) => {
                return Err(StoreError::Unavailable(connect_message(
                    &self.config,
                    &connect_detail(&e),
                )))
            }
            Ok(Ok(pair)) => pair,
        };
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %describe(&e), "database connection ended");
            }
        });
        Ok(client)
    }

    /// Writes `rows`, isolating rows the database refuses for their data: a failed statement is
    /// split in halves until the offending rows stand alone (about log2(n) extra round trips per
    /// bad row). With `stop_at_first_failure` (FIFO queues), rows after the first failure are
    /// held back. Rows not confirmed before `deadline` are reported as failures, never as stored.
    ///
    /// Returns an error only when nothing more can be done for the batch now: the database is
    /// gone even after one reconnect, or refuses the statement itself.
    pub async fn write(
        &mut self,
        rows: &[LoginRow],
        key_ids: &KeyIds,
        deadline: Instant,
        stop_at_first_failure: bool,
    ) -> Result<WriteReport, StoreError> {
        self.write_after(rows, key_ids, deadline, stop_at_first_failure, None)
            .await
    }

    /// Plans and writes a batch like `plan_batch` then `write`, but a large batch without the
    /// vault is streamed: the COPY starts at once and each row goes out as soon as it is
    /// planned, so the server ingests while the client parses and masks. Everything after that
    /// first attempt (bisection, the INSERT fallback, deadlines, the one reconnect) is `write`'s,
    /// on the then complete plan. Leaves `planner` fully planned whatever happens.
    pub async fn write_planning(
        &mut self,
        planner: &mut Planner<'_>,
        deadline: Instant,
    ) -> Result<WriteReport, StoreError> {
        let key_ids = planner.plan().key_ids.clone();
        let fifo = planner.plan().fifo;
        // FIFO batches are planned in delivery order, not the lock order the COPY needs (and
        // are at most 10 messages anyway).
        let streamed = Insert::for_keys(&key_ids) == Insert::Rows
            && !fifo
            && planner.plan().received >= COPY_FROM_ROWS
            && Instant::now() < deadline;
        let first = if streamed {
            let attempt = self
                .insert(Rows::Planning(&mut *planner), &key_ids, deadline)
                .await;
            // After an error or the deadline the rest still has to be planned and reported.
            planner.plan_rest();
            Some(attempt)
        } else {
            planner.plan_rest();
            None
        };
        self.write_after(&planner.plan().rows, &key_ids, deadline, fifo, first)
            .await
    }

    /// `write`, where the attempt on the whole of `rows` may have been made already (`first`).
    async fn write_after(
        &mut self,
        rows: &[LoginRow],
        key_ids: &KeyIds,
        deadline: Instant,
        stop_at_first_failure: bool,
        mut first: Option<Result<usize, Attempt>>,
    ) -> Result<WriteReport, StoreError> {
        let mut report = WriteReport::default();
        // Ranges still to write, the next one on top; left halves go first to keep order.
        let mut pending: Vec<Range<usize>> = Vec::with_capacity(8);
        pending.push(0..rows.len());
        let mut reconnected = false;
        let mut contention_retries = 0;
        while let Some(range) = pending.pop() {
            let attempt = match first.take() {
                Some(attempt) => attempt,
                None => {
                    if range.is_empty() {
                        continue;
                    }
                    if stop_at_first_failure && !report.failures.is_empty() {
                        report.failures.extend(fail_all(&rows[range], FIFO_STOPPED));
                        continue;
                    }
                    if Instant::now() >= deadline {
                        report
                            .failures
                            .extend(fail_all(&rows[range], NOT_CONFIRMED));
                        continue;
                    }
                    self.insert(Rows::Planned(&rows[range.clone()]), key_ids, deadline)
                        .await
                }
            };
            match attempt {
                Ok(inserted) => {
                    report.inserted += inserted;
                    report.already_stored += range.len() - inserted;
                }
                Err(Attempt::Deadline) => {
                    // Ask the server to stop the statement. If it commits anyway, reporting the
                    // rows failed is still safe: message_id makes the redelivered insert a no-op.
                    self.cancel_running_statement().await;
                    self.disconnect();
                    report
                        .failures
                        .extend(fail_all(&rows[range], NOT_CONFIRMED));
                }
                Err(Attempt::TimedOutOnServer) => {
                    report
                        .failures
                        .extend(fail_all(&rows[range], NOT_CONFIRMED));
                }
                Err(Attempt::CancelledOnServer) => {
                    tracing::warn!(
                        "the server cancelled the write (SQLSTATE 57014) before the deadline"
                    );
                    report.failures.extend(fail_all(&rows[range], CANCELLED));
                }
                Err(Attempt::Unreachable(e)) => return Err(e),
                Err(Attempt::Failed(e)) => match classify(&e) {
                    ErrorKind::RowData if range.len() == 1 => report.failures.push(Failure::of(
                        &rows[range.start],
                        format!("the database refused the row ({})", describe(&e)),
                    )),
                    ErrorKind::RowData => {
                        let middle = range.start + range.len() / 2;
                        pending.push(middle..range.end);
                        pending.push(range.start..middle);
                    }
                    ErrorKind::Contention if contention_retries < CONTENTION_RETRIES => {
                        contention_retries += 1;
                        tracing::info!(error = %describe(&e), retry = contention_retries, "lock contention; writing again");
                        tokio::time::sleep_until(
                            deadline.min(Instant::now() + backoff(contention_retries)),
                        )
                        .await;
                        pending.push(range);
                    }
                    ErrorKind::Contention => {
                        let reason = format!(
                            "not stored: the database aborted the write {} times for lock contention ({})",
                            CONTENTION_RETRIES + 1,
                            describe(&e)
                        );
                        report
                            .failures
                            .extend(rows[range].iter().map(|row| Failure::of(row, &reason)));
                    }
                    ErrorKind::Transient if !reconnected => {
                        tracing::warn!(error = %describe(&e), "database error; reconnecting once");
                        reconnected = true;
                        self.disconnect();
                        pending.push(range);
                    }
                    ErrorKind::Transient => {
                        // The next invocation starts on a fresh connection (after a fail-over,
                        // maybe to another server).
                        self.disconnect();
                        return Err(StoreError::Unavailable(describe(&e)));
                    }
                    ErrorKind::Fatal => return Err(StoreError::Database(describe(&e))),
                },
            }
        }
        Ok(report)
    }

    /// The COPY path's statements on the current connection, prepared on first use.
    async fn prepare_copy(&mut self, deadline: Instant) -> Result<(), StoreError> {
        if self.copy.is_some() {
            return Ok(());
        }
        let client = self.client(deadline).await?;
        let preparing = async {
            let (stored_ids, copy) =
                tokio::join!(client.prepare(STORED_IDS), client.prepare(COPY_ROWS));
            Ok::<_, tokio_postgres::Error>(CopyStatements {
                stored_ids: stored_ids?,
                copy: copy?,
            })
        };
        self.copy = Some(match timeout_at(deadline, preparing).await {
            Err(_) => {
                return Err(StoreError::Unavailable(
                    "prepare did not finish before the deadline".into(),
                ))
            }
            Ok(Err(e)) => return Err(prepare_error(&e)),
            Ok(Ok(statements)) => statements,
        });
        Ok(())
    }

    /// One write of `rows` (one INSERT, or COPY for a large batch); returns how many were new.
    async fn insert(
        &mut self,
        mut rows: Rows<'_, '_>,
        key_ids: &KeyIds,
        deadline: Instant,
    ) -> Result<usize, Attempt> {
        let insert = Insert::for_keys(key_ids);
        // The vault's entries need the INSERT's data-modifying CTE, so only plain rows use COPY.
        // Rows still being planned go by COPY: write_planning streams only large batches.
        let by_copy = insert == Insert::Rows
            && match &rows {
                Rows::Planned(rows) => rows.len() >= COPY_FROM_ROWS,
                Rows::Planning(_) => true,
            };
        // A prepare that waits past the deadline (behind a lock on the table, as an execute
        // would) ends like an execute that does: the rows are reported, not the whole batch.
        let unless_late = |e: StoreError| {
            if Instant::now() >= deadline {
                Attempt::Deadline
            } else {
                Attempt::Unreachable(e)
            }
        };
        if by_copy {
            self.prepare_copy(deadline).await.map_err(unless_late)?;
        }
        // Last, so that nothing can reconnect (and drop prepared statements) after it. Should
        // that have dropped the COPY statements, the INSERT alone does the job.
        self.prepared(deadline, insert).await.map_err(unless_late)?;
        let client = self.client.as_ref().expect("connected above");
        let statement = self.prepared[insert as usize]
            .as_ref()
            .expect("prepared above");
        let copy = self.copy.as_ref().filter(|_| by_copy);
        // The server enforces the deadline too: a cancel request is only best effort, and a
        // statement still queued behind a lock when the client gives up could otherwise commit
        // later. Both messages go out together (pipelined), so this adds no round trip.
        let remaining_ms = deadline
            .saturating_duration_since(Instant::now())
            .as_millis()
            .max(1);
        let server_timeout = format!("SET statement_timeout = {remaining_ms}");
        let write = async {
            if let Some(copy) = copy {
                match copy_new_rows(client, copy, &mut rows, &key_ids.mask).await {
                    // Another writer stored one of the ids since we looked (or `rows` repeats
                    // one): the INSERT's ON CONFLICT sorts it out. The failed COPY stored nothing.
                    Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {}
                    copied => return copied,
                }
            }
            insert_rows(client, statement, insert, rows.all(), key_ids).await
        };
        let pipelined = async {
            let (set, written) = tokio::join!(client.batch_execute(&server_timeout), write);
            set.and(written)
        };
        match timeout_at(deadline, pipelined).await {
            Err(_) => Err(Attempt::Deadline),
            // Ours fires at the deadline; one that comes sooner was someone else's.
            Ok(Err(e)) if e.code() == Some(&SqlState::QUERY_CANCELED) => {
                if Instant::now() + CANCEL_TIMEOUT >= deadline {
                    Err(Attempt::TimedOutOnServer)
                } else {
                    Err(Attempt::CancelledOnServer)
                }
            }
            Ok(Err(e)) => Err(Attempt::Failed(e)),
            Ok(Ok(inserted)) => Ok(inserted),
        }
    }
}

/// One `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING`; returns how many were new.
async fn insert_rows(
    client: &Client,
    statement: &Statement,
    insert: Insert,
    rows: &[LoginRow],
    key_ids: &KeyIds,
) -> Result<usize, tokio_postgres::Error> {
    let columns = Columns::of(rows);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![
        &columns.message_id,
        &columns.user_id,
        &columns.device_type,
        &columns.masked_ip,
        &columns.masked_device_id,
        &columns.locale,
        &columns.app_version,
        &columns.create_date,
        &key_ids.mask,
    ];
    if insert == Insert::RowsAndVault {
        params.extend([
            &columns.sealed_ip as &(dyn ToSql + Sync),
            &columns.sealed_device_id,
            &key_ids.vault,
        ]);
    }
    // The command tag counts the rows inserted, which are exactly the new ones.
    Ok(client.execute(statement, &params).await? as usize)
}

/// Binary COPY of the rows whose message_id is not stored yet; returns how many it copied.
/// The lookup and the start of the COPY go out together, and the lookup's answer arrives before
/// the server asks for data, so this costs one round trip more than the INSERT. A first
/// delivery is not looked up: an index lookup costs about as much as the COPY of its row.
async fn copy_new_rows(
    client: &Client,
    statements: &CopyStatements,
    rows: &mut Rows<'_, '_>,
    mask_key_id: &str,
) -> Result<usize, tokio_postgres::Error> {
    // Only redeliveries can be stored already; SQS marks first deliveries (`first_receive`).
    let redelivered: Vec<&str> = match rows {
        Rows::Planned(rows) => rows
            .iter()
            .filter(|row| !row.first_receive)
            .map(|row| row.message_id.as_str())
            .collect(),
        Rows::Planning(planner) => planner.maybe_stored_ids(),
    };
    let lookup: [&(dyn ToSql + Sync); 1] = [&redelivered];
    let looking_up = async {
        if redelivered.is_empty() {
            Ok(Vec::new())
        } else {
            client.query(&statements.stored_ids, &lookup).await
        }
    };
    let requests = async { tokio::join!(looking_up, client.copy_in(&statements.copy)) };
    let (stored, sink) = match rows {
        Rows::Planned(_) => requests.await,
        Rows::Planning(planner) => plan_while(requests, planner).await,
    };
    // On an error here the sink, if any, is dropped, which aborts the COPY: nothing is stored.
    let stored = stored?;
    let stored: HashSet<&str> = stored.iter().map(|row| row.get(0)).collect();
    let writer = BinaryCopyInWriter::new(sink?, &COPY_TYPES);
    tokio::pin!(writer);
    let is_new = |row: &LoginRow| !stored.contains(row.message_id.as_str());
    match rows {
        Rows::Planned(rows) => {
            // In the global lock order (plans are in it already, so this sort is a check).
            let mut new_rows: Vec<&LoginRow> = rows.iter().filter(|row| is_new(row)).collect();
            new_rows.sort_unstable_by(|a, b| a.message_id.cmp(&b.message_id));
            for row in new_rows {
                copy_row(writer.as_mut(), row, mask_key_id).await?;
            }
        }
        // The writer hands the server a buffer every 4 KiB, and waits for the connection to
        // take it, so the server ingests these rows while the next ones are planned. The planner
        // plans a non-FIFO batch in messageId order, the global lock order.
        Rows::Planning(planner) => {
            let mut sent = 0;
            loop {
                for row in &planner.plan().rows[sent..] {
                    if is_new(row) {
                        copy_row(writer.as_mut(), row, mask_key_id).await?;
                    }
                }
                sent = planner.plan().rows.len();
                if !planner.plan_next() {
                    break;
                }
            }
        }
    }
    Ok(writer.finish().await? as usize)
}

/// Records planned between two looks at the connection while waiting for the server.
const PLAN_AHEAD_STEP: usize = 32;

/// Awaits `requests` while planning rows: the answers take a round trip, in which the client
/// would otherwise sit idle. Yields between steps so the connection task can send the requests
/// and read the answers (the runtime has one thread).
async fn plan_while<F: std::future::Future>(requests: F, planner: &mut Planner<'_>) -> F::Output {
    tokio::pin!(requests);
    loop {
        tokio::select! {
            biased;
            answers = &mut requests => return answers,
            () = tokio::task::yield_now(), if !planner.is_done() => {
                for _ in 0..PLAN_AHEAD_STEP {
                    planner.plan_next();
                }
            }
        }
    }
}

async fn copy_row(
    writer: std::pin::Pin<&mut BinaryCopyInWriter>,
    row: &LoginRow,
    mask_key_id: &str,
) -> Result<(), tokio_postgres::Error> {
    let values: [&(dyn ToSql + Sync); 9] = [
        &row.message_id,
        &row.user_id,
        &row.device_type,
        &row.masked_ip,
        &row.masked_device_id,
        &row.locale,
        &row.app_version,
        &row.create_date,
        &mask_key_id,
    ];
    writer.write(&values).await
}

/// The rows of one write: planned already, or planned while they are written.
enum Rows<'r, 'p> {
    Planned(&'r [LoginRow]),
    Planning(&'r mut Planner<'p>),
}

impl Rows<'_, '_> {
    /// All the rows, planning the rest first.
    fn all(&mut self) -> &[LoginRow] {
        match self {
            Rows::Planned(rows) => rows,
            Rows::Planning(planner) => {
                planner.plan_rest();
                &planner.plan().rows
            }
        }
    }
}

/// How long a cancel request may take; well inside the handler's deadline margin.
const CANCEL_TIMEOUT: Duration = Duration::from_millis(300);

const NOT_CONFIRMED: &str = "not confirmed: the invocation deadline was reached";

const CANCELLED: &str = "not stored: the server cancelled the statement (SQLSTATE 57014: pg_cancel_backend, or a statement_timeout set on the role or database) before the invocation deadline";

/// How one statement attempt ended, when it did not succeed.
enum Attempt {
    Failed(tokio_postgres::Error),
    /// The client stopped waiting at the deadline; the statement may still be running.
    Deadline,
    /// The server's statement_timeout (set to the deadline) aborted the statement: not committed.
    TimedOutOnServer,
    /// The server cancelled the statement before the deadline (an administrator's
    /// pg_cancel_backend, or a shorter timeout configured on the server): not committed.
    CancelledOnServer,
    Unreachable(StoreError),
}

/// The batch as one array per column, borrowed from the rows (no copies of the strings).
struct Columns<'a> {
    message_id: Vec<&'a str>,
    user_id: Vec<&'a str>,
    device_type: Vec<&'a str>,
    masked_ip: Vec<&'a str>,
    masked_device_id: Vec<&'a str>,
    locale: Vec<Option<&'a str>>,
    app_version: Vec<i32>,
    create_date: Vec<time::Date>,
    sealed_ip: Vec<Option<&'a [u8]>>,
    sealed_device_id: Vec<Option<&'a [u8]>>,
}

impl<'a> Columns<'a> {
    fn of(rows: &'a [LoginRow]) -> Self {
        Columns {
            message_id: rows.iter().map(|r| r.message_id.as_str()).collect(),
            user_id: rows.iter().map(|r| r.user_id.as_str()).collect(),
            device_type: rows.iter().map(|r| r.device_type.as_str()).collect(),
            masked_ip: rows.iter().map(|r| r.masked_ip.as_str()).collect(),
            masked_device_id: rows.iter().map(|r| r.masked_device_id.as_str()).collect(),
            locale: rows.iter().map(|r| r.locale.as_deref()).collect(),
            app_version: rows.iter().map(|r| r.app_version).collect(),
            create_date: rows.iter().map(|r| r.create_date).collect(),
            sealed_ip: rows.iter().map(|r| r.sealed_ip.as_deref()).collect(),
            sealed_device_id: rows.iter().map(|r| r.sealed_device_id.as_deref()).collect(),
        }
    }
}

fn fail_all<'a>(rows: &'a [LoginRow], reason: &'a str) -> impl Iterator<Item = Failure> + 'a {
    rows.iter().map(move |row| Failure::of(row, reason))
}

/// How often a write aborted by a deadlock or serialization failure is tried again within the
/// invocation. Rows go in one lock order, so none are expected; this covers what that order does
/// not (a DBA's transaction, triggers, other writers of the table).
const CONTENTION_RETRIES: u32 = 5;

/// The pause before contention retry `n` (1, 2, ...): 5, 10, 20, 40, 80 ms plus up to as much
/// again, so two writers that collided do not collide again in step.
fn backoff(n: u32) -> Duration {
    let base = Duration::from_millis(5 << (n.min(6) - 1));
    let spread = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| now.subsec_nanos());
    base + base.mul_f64(f64::from(spread % 1000) / 1000.0)
}

fn connect_message(config: &DatabaseConfig, detail: &str) -> String {
    let hosts: Vec<String> = config
        .connection
        .get_hosts()
        .iter()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config
        .connection
        .get_ports()
        .iter()
        .map(u16::to_string)
        .collect();
    format!(
        "could not connect to PostgreSQL at {}:{} (check DATABASE_URL or the PG* variables): {detail}",
        hosts.join(","),
        ports.join(",")
    )
}

fn connect_detail(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        // Login errors (bad password, unknown database) are about configuration, not rows.
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

fn prepare_error(error: &tokio_postgres::Error) -> StoreError {
    const HINT: &str = "apply migrations/*.sql in order (psql -f), or start the function once with AUTO_MIGRATE=true";
    let missing = [
        SqlState::UNDEFINED_TABLE,
        SqlState::UNDEFINED_COLUMN,
        SqlState::INVALID_COLUMN_REFERENCE,
    ];
    match error.code() {
        Some(code) if missing.contains(code) => StoreError::Schema(format!(
            "table user_logins is missing, or lacks message_id and its unique index ({}): {HINT}",
            describe(error)
        )),
        Some(code) if code == &SqlState::INSUFFICIENT_PRIVILEGE => StoreError::Schema(format!(
            "the database role may not INSERT into user_logins ({}): GRANT SELECT, INSERT ON user_logins TO <role>",
            describe(error)
        )),
        _ if classify(error) == ErrorKind::Transient => StoreError::Unavailable(describe(error)),
        _ => StoreError::Database(describe(error)),
    }
}

fn tls_connector(config: &DatabaseConfig) -> Result<MakeTlsConnector, StoreError> {
    let mut builder = TlsConnector::builder();
    match config.ssl_mode {
        // libpq does not check the certificate in these modes; neither do we.
        // Nothing is verified, so the system's CA bundle need not be loaded either: that load
        // was most of the cold start's connect time (BENCHMARKS.md).
        SslMode::Disable | SslMode::Prefer | SslMode::Require => {
            builder
                .danger_accept_invalid_certs(true)
                .danger_accept_invalid_hostnames(true)
                .disable_built_in_roots(true);
        }
        SslMode::VerifyCa => {
            builder.danger_accept_invalid_hostnames(true);
        }
        SslMode::VerifyFull => {}
    }
    if let Some(path) = &config.root_cert {
        let pem = fs::read(path).map_err(|e| {
            StoreError::Tls(format!("cannot read sslrootcert {}: {e}", path.display()))
        })?;
        for certificate in pem_certificates(&pem) {
            let certificate = Certificate::from_pem(&certificate).map_err(|e| {
                StoreError::Tls(format!(
                    "sslrootcert {} is not a PEM certificate: {e}",
                    path.display()
                ))
            })?;
            builder.add_root_certificate(certificate);
        }
    }
    let connector = builder
        .build()
        .map_err(|e| StoreError::Tls(e.to_string()))?;
    Ok(MakeTlsConnector::new(connector))
}

/// Splits a PEM bundle (such as the RDS CA bundle) into single certificates.
fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    text.split_inclusive(END)
        .filter(|chunk| chunk.contains("-----BEGIN CERTIFICATE-----"))
        .map(|chunk| chunk.trim().as_bytes().to_vec())
        .collect()
}

/// A plain client with the same connection and TLS handling, for the command-line tools.
pub async fn connect_client(
    config: DatabaseConfig,
    deadline: Instant,
) -> Result<Client, StoreError> {
    let mut store = Store::connect(config, deadline).await?;
    Ok(store.client.take().expect("Store::connect leaves a client"))
}
