//! PostgreSQL: the function's connections (one per write running at once), the batch write, and
//! what went wrong.
//!
//! - `connection`: connect (TLS from `tls`), migrate, the statements a connection owns, and the
//!   schema check;
//! - `sql`: the SQL text and the migrations;
//! - `write`: one attempt at writing rows (one INSERT, or COPY for a large batch) in a
//!   transaction with the server-side deadline;
//! - `errors`: how a database error affects the batch, described without values;
//! - here: `Store`, which reconnects, splits a batch around refused rows, retries contention,
//!   and keeps to the deadline.

mod connection;
mod errors;
mod iam;
mod settings;
mod sql;
mod sslmode;
mod tls;
mod write;

use std::ops::Range;
use std::time::Duration;

use std::sync::Mutex;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use crate::budget::{self, Step};

pub use connection::connect_client;
use connection::{Connection, Target, SERVER_ANSWER_GRACE};
pub use errors::StoreError;
use errors::{classify, describe, ErrorKind};
pub use iam::IamAuth;
use login_etl_core::batch::{KeyIds, LoginRow};
use login_etl_core::failure::{Failure, Reason};
use login_etl_core::fifo::{GroupGate, QueueKind};
pub use settings::{Credentials, CredentialsSource, DatabaseConfig, StatementMode};
pub use sql::{COPY_COLUMNS, COPY_COLUMN_TYPES, COPY_ROWS, MIGRATIONS};
pub use sslmode::{RootCertificates, SslMode};
pub use write::copy_values;
use write::Attempt;

/// What one write did to each row.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WriteReport {
    pub inserted: usize,
    /// Rows whose message_id was already stored.
    pub already_stored: usize,
    /// Rows not committed: refused by the database for their data, not written before the
    /// deadline, cancelled on the server, lost to contention (or, on FIFO queues, held back
    /// behind a refused row).
    pub failures: Vec<Failure>,
}

/// What the store prepares for at connect.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// Rows carry vault entries (the function runs with RECOVERY_KEY).
    pub with_vault: bool,
    /// Apply the embedded migrations before preparing (AUTO_MIGRATE).
    pub migrate: bool,
    /// Named statements prepared once per connection, or unnamed ones (PREPARED_STATEMENTS).
    pub statement_mode: StatementMode,
    /// How many connections the store may have open: one per write running at once. Lambda
    /// sends one invocation at a time to an environment (1); Lambda Managed Instances send up to
    /// `AWS_LAMBDA_MAX_CONCURRENCY`.
    pub max_connections: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            with_vault: false,
            migrate: false,
            statement_mode: StatementMode::default(),
            max_connections: 1,
        }
    }
}

/// The function's database: a connection per write running at once (one, unless the
/// environment serves invocations concurrently), each opened when first needed and reopened when
/// it breaks.
pub struct Store {
    target: Target,
    /// Open connections that no write is using.
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection the store may have open; closed at shutdown.
    permits: Semaphore,
}

/// One write's hold on the store: a permit, and the connection the write uses (opened when it
/// needs one), which goes back to the store's idle ones when the write is done.
struct Session<'s> {
    target: &'s Target,
    connection: Option<Connection>,
    _permit: SemaphorePermit<'s>,
}

/// How often a write aborted by a deadlock or serialization failure is tried again within the
/// invocation. Rows go in one lock order, so none are expected; this covers what that order does
/// not (a DBA's transaction, triggers, other writers of the table).
const CONTENTION_RETRIES: u32 = 5;

impl Store {
    /// Opens the first connection: connects, migrates if asked, prepares the statements and
    /// checks the schema with a write of no rows; a missing table, column, index or function is
    /// a `StoreError::Schema` naming what to apply. More connections open as writes need them.
    pub async fn connect(
        config: DatabaseConfig,
        options: StoreOptions,
        deadline: Instant,
    ) -> Result<Self, StoreError> {
        let target = Target::new(config, options.with_vault, options.statement_mode)?;
        let connection = Connection::open(&target, options.migrate, deadline).await?;
        Ok(Store {
            target,
            idle: Mutex::new(vec![connection]),
            permits: Semaphore::new(options.max_connections.max(1)),
        })
    }

    /// Closes every idle connection, telling the server (so it keeps no orphaned backend), all
    /// at once, and refuses writes from now on. For shutdown, once the writes are done or have
    /// given up.
    pub async fn close(&self) {
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle_connections());
        let count = idle.len();
        let mut closing = tokio::task::JoinSet::new();
        for connection in idle {
            closing.spawn(connection.close());
        }
        while closing.join_next().await.is_some() {}
        tracing::info!(connections = count, "database connections closed");
    }

    fn idle_connections(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // A panic while holding the lock leaves the list intact (push and pop only).
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A session for one write: waits for a permit, and takes an idle connection if there is one.
    async fn session(&self) -> Result<Session<'_>, StoreError> {
        let permit = self.permits.acquire().await.map_err(|_| {
            StoreError::Unavailable(
                "the function is shutting down; the batch will be retried".into(),
            )
        })?;
        Ok(Session {
            target: &self.target,
            connection: self.idle_connections().pop(),
            _permit: permit,
        })
    }

    /// Returns a session's connection to the idle ones, unless it broke.
    fn end(&self, session: Session<'_>) {
        if let Some(connection) = session.connection {
            if !connection.client.is_closed() {
                self.idle_connections().push(connection);
            }
        }
    }

    /// Rows written by this store carry vault entries.
    pub fn with_vault(&self) -> bool {
        self.target.with_vault
    }

    /// Writes `rows`, isolating rows the database refuses for their data: a failed statement is
    /// split in halves until the offending rows stand alone (about log2(n) extra round trips per
    /// bad row). From a FIFO queue (rows in delivery order), a failed statement is split into
    /// single rows written in order instead, and the rows after a failed one of the same message
    /// group are held back; other groups go on. Rows not confirmed before `deadline` are
    /// reported as failures, never as stored.
    ///
    /// Returns an error only when nothing more can be done for the batch now: the database is
    /// gone even after one reconnect, or refuses the statement itself.
    pub async fn write(
        &self,
        rows: &[LoginRow],
        key_ids: &KeyIds,
        deadline: Instant,
        queue: QueueKind,
    ) -> Result<WriteReport, StoreError> {
        let mut session = self.session().await?;
        let report = session
            .write_isolating_failures(rows, key_ids, deadline, queue)
            .await;
        self.end(session);
        report
    }
}

impl Session<'_> {
    /// One attempt on the current connection, opening one first if there is none.
    async fn attempt(
        &mut self,
        rows: &[LoginRow],
        key_ids: &KeyIds,
        deadline: Instant,
    ) -> Result<usize, Attempt> {
        let connection = match self.connection(deadline).await {
            Ok(connection) => connection,
            // A connect or prepare that waits past the deadline (behind a lock on the table, as
            // a write would) ends like a write that does: the rows are reported, not the batch.
            // (The server's own timeout may answer a moment before the deadline.)
            Err(_) if Instant::now() + SERVER_ANSWER_GRACE >= deadline => {
                return Err(Attempt::Deadline)
            }
            Err(e) => return Err(Attempt::Unreachable(e)),
        };
        connection.write_once(rows, key_ids, deadline).await
    }

    /// The open connection, reconnecting when there is none or it was closed.
    async fn connection(&mut self, deadline: Instant) -> Result<&Connection, StoreError> {
        if self
            .connection
            .as_ref()
            .is_some_and(|connection| connection.client.is_closed())
        {
            self.connection = None;
        }
        let connection = match self.connection.take() {
            Some(connection) => connection,
            None => {
                let opened = Connection::open(self.target, false, deadline).await?;
                budget::lap(Step::Connect);
                opened
            }
        };
        Ok(self.connection.insert(connection))
    }

    /// `Store::write` on this session's connection.
    async fn write_isolating_failures(
        &mut self,
        rows: &[LoginRow],
        key_ids: &KeyIds,
        deadline: Instant,
        queue: QueueKind,
    ) -> Result<WriteReport, StoreError> {
        let mut tally = Tally {
            report: WriteReport::default(),
            groups: GroupGate::new(queue),
        };
        // Ranges still to write, the next one on top; left halves go first to keep order.
        let mut pending: Vec<Range<usize>> = Vec::with_capacity(8);
        pending.push(0..rows.len());
        let mut reconnected = false;
        let mut contention_retries = 0;
        while let Some(range) = pending.pop() {
            if range.is_empty() {
                continue;
            }
            // From a FIFO queue a range is the whole batch or, after a refusal, one row.
            if rows[range.clone()]
                .iter()
                .any(|row| tally.groups.holds_back(row.message_group.as_deref()))
            {
                tally.fail(&rows[range], Reason::HeldBack);
                continue;
            }
            if Instant::now() >= deadline {
                tally.fail(&rows[range], Reason::NotConfirmed);
                continue;
            }
            let attempt = self.attempt(&rows[range.clone()], key_ids, deadline).await;
            match attempt {
                Ok(inserted) => {
                    tally.report.inserted += inserted;
                    tally.report.already_stored += range.len() - inserted;
                }
                Err(Attempt::Deadline) => {
                    // The server did not answer even its own statement_timeout in time (a pooler
                    // still queueing the write, a network gone quiet). No cancel request: the
                    // server-side deadline ends the statement anyway, and a cancel request cut
                    // short crashes PgBouncer 1.18 (docs/reliability.md, "Deadlines"). Should the
                    // write commit after all, reporting its rows failed is safe: message_id makes
                    // the redelivered insert a no-op.
                    if let Some(connection) = self.connection.take() {
                        connection.abandon();
                    }
                    tally.fail(&rows[range], Reason::NotConfirmed);
                }
                Err(Attempt::TimedOutOnServer) => tally.fail(&rows[range], Reason::NotConfirmed),
                Err(Attempt::CancelledOnServer) => {
                    tracing::warn!(
                        "the server cancelled the write (SQLSTATE 57014) before the deadline"
                    );
                    tally.fail(&rows[range], Reason::Cancelled);
                }
                Err(Attempt::Unreachable(e)) => return Err(e),
                Err(Attempt::Failed(e)) => match classify(&e) {
                    ErrorKind::RowData if range.len() == 1 => {
                        tally.fail(&rows[range], Reason::RefusedByDatabase(describe(&e)))
                    }
                    // FIFO: one row at a time, in order, so that a refused row holds back only
                    // the later rows of its own group (FIFO batches hold at most 10 messages).
                    ErrorKind::RowData if queue.is_fifo() => {
                        pending.extend(range.rev().map(|i| i..i + 1));
                    }
                    ErrorKind::RowData => {
                        let middle = range.start + range.len() / 2;
                        pending.push(middle..range.end);
                        pending.push(range.start..middle);
                    }
                    ErrorKind::Contention if contention_retries < CONTENTION_RETRIES => {
                        contention_retries += 1;
                        tracing::info!(error = %describe(&e), retry = contention_retries, "lock contention; writing again");
                        let pause = Instant::now() + backoff(contention_retries);
                        tokio::time::sleep_until(deadline.min(pause)).await;
                        pending.push(range);
                    }
                    ErrorKind::Contention => tally.fail(
                        &rows[range],
                        Reason::Contention {
                            attempts: CONTENTION_RETRIES + 1,
                            error: describe(&e),
                        },
                    ),
                    ErrorKind::Transient if !reconnected => {
                        tracing::warn!(error = %describe(&e), "database error; reconnecting once");
                        reconnected = true;
                        self.connection = None;
                        pending.push(range);
                    }
                    ErrorKind::Transient => {
                        // The next invocation starts on a fresh connection (after a fail-over,
                        // maybe to another server).
                        self.connection = None;
                        return Err(StoreError::Unavailable(describe(&e)));
                    }
                    ErrorKind::Fatal => return Err(StoreError::Database(describe(&e))),
                },
            }
        }
        Ok(tally.report)
    }
}

/// The report of a write under way, and the FIFO message groups its failures hold back.
struct Tally<'r> {
    report: WriteReport,
    groups: GroupGate<'r>,
}

impl<'r> Tally<'r> {
    /// `rows` were not stored, for `reason`; on a FIFO queue their groups stop here.
    fn fail(&mut self, rows: &'r [LoginRow], reason: Reason) {
        for row in rows {
            self.groups.failed(row.message_group.as_deref());
            self.report.failures.push(Failure::of(row, reason.clone()));
        }
    }
}

/// The pause before contention retry `n` (1, 2, ...): 5, 10, 20, 40, 80 ms plus up to as much
/// again, so two writers that collided do not collide again in step.
fn backoff(n: u32) -> Duration {
    let base = Duration::from_millis(5 << (n.clamp(1, 6) - 1));
    let spread = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| now.subsec_nanos());
    base + base.mul_f64(f64::from(spread % 1000) / 1000.0)
}
