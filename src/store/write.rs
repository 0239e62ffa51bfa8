//! One attempt at writing rows on a connection: one INSERT, or a binary COPY of the new rows for
//! a large batch. What to do when it fails (split, retry, reconnect) is `Store::write`'s.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use tokio::time::{timeout_at, Instant};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use super::connection::{Bulk, Connection, Statements, SERVER_ANSWER_GRACE};
use super::sql::{begin_with_deadline, COPY_COLUMN_TYPES};
use super::StoreError;
use crate::budget::{self, Step};
use login_etl_core::batch::{KeyIds, LoginRow};

/// Batches of at least this many rows (without the vault) go by COPY: below it the COPY's extra
/// round trip costs more than its faster load saves (docs/benchmarks.md).
pub(super) const COPY_FROM_ROWS: usize = 100;

/// Whether a COPY may write these rows: none needs its fallback date claimed, which only the
/// INSERT does.
fn copyable(rows: &[LoginRow]) -> bool {
    rows.iter().all(|row| !row.fallback_date)
}

/// How one attempt ended, when it did not succeed.
pub(super) enum Attempt {
    Failed(tokio_postgres::Error),
    /// The server did not answer by the deadline and its grace; the statement may still run.
    Deadline,
    /// The server's statement_timeout (set to the deadline) aborted the statement: not committed.
    TimedOutOnServer,
    /// The server cancelled the statement before the deadline (an administrator's
    /// pg_cancel_backend, or a shorter timeout configured on the server): not committed.
    CancelledOnServer,
    Unreachable(StoreError),
}

impl Connection {
    /// Writes `rows` once; returns how many were new.
    pub(super) async fn write_once(
        &self,
        rows: &[LoginRow],
        key_ids: &KeyIds,
        deadline: Instant,
    ) -> Result<usize, Attempt> {
        let client = &self.client;
        let write = async {
            if let Some(bulk) = &self.statements.bulk {
                if rows.len() >= COPY_FROM_ROWS && copyable(rows) {
                    let copying = copy_new_rows(client, bulk, rows, &key_ids.mask);
                    match in_transaction(client, deadline, copying).await {
                        // Another writer stored one of the ids since we looked (or `rows`
                        // repeats one): the INSERT's ON CONFLICT sorts it out. The failed COPY's
                        // transaction stored nothing.
                        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {}
                        copied => return copied,
                    }
                }
            }
            let inserting = insert_rows(client, &self.statements, rows, key_ids);
            in_transaction(client, deadline, inserting).await
        };
        // The server's statement_timeout ends the write at the deadline; its answer is awaited
        // a little longer, so that the outcome is known and the connection kept.
        match timeout_at(deadline + SERVER_ANSWER_GRACE, write).await {
            Err(_) => Err(Attempt::Deadline),
            // Ours fires at the deadline; one that comes sooner was someone else's.
            Ok(Err(e)) if e.code() == Some(&SqlState::QUERY_CANCELED) => {
                if Instant::now() + SERVER_ANSWER_GRACE >= deadline {
                    Err(Attempt::TimedOutOnServer)
                } else {
                    Err(Attempt::CancelledOnServer)
                }
            }
            Ok(Err(e)) => Err(Attempt::Failed(e)),
            Ok(Ok(inserted)) => Ok(inserted),
        }
    }

    /// A write of no rows, rolled back: the end of the schema check, with the statements writes
    /// will use, in the transaction `Connection::open` began with the deadline.
    pub(super) async fn write_nothing(&self) -> Result<(), tokio_postgres::Error> {
        let key_ids = KeyIds {
            mask: String::new(),
            vault: self.statements.with_vault.then(String::new),
        };
        let client = &self.client;
        let (inserted, rolled_back) = tokio::join!(
            insert_rows(client, &self.statements, &[], &key_ids),
            client.batch_execute("ROLLBACK")
        );
        inserted.and(rolled_back)
    }
}

/// Runs `work` in a transaction of its own, whose statements the server aborts at `deadline`.
///
/// The server enforces the deadline too: a cancel request is only best effort, and a statement
/// still queued behind a lock when the client gives up could otherwise commit later. The timeout
/// is local to the transaction, so nothing of it outlives the write: behind a pooler in
/// transaction mode, the next client of the server connection finds the session as it was.
///
/// `BEGIN`, the work's first request and `COMMIT` go out together (pipelined), so a write that
/// sends one request still takes one round trip. `work` must send its first request when first
/// polled (tokio-postgres's requests do) so that it goes out before the `COMMIT`. When it fails,
/// the server turns that `COMMIT` into a rollback.
async fn in_transaction<T>(
    client: &Client,
    deadline: Instant,
    work: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, tokio_postgres::Error> {
    let begin = begin_with_deadline(milliseconds_until(deadline));
    let (begun, done, committed) = tokio::join!(
        client.batch_execute(&begin),
        work,
        client.batch_execute("COMMIT")
    );
    budget::lap(Step::Commit);
    begun?;
    let value = done?;
    committed?;
    Ok(value)
}

/// What is left until `deadline`, in whole milliseconds, at least 1 (0 would mean no timeout).
pub(super) fn milliseconds_until(deadline: Instant) -> u128 {
    deadline
        .saturating_duration_since(Instant::now())
        .as_millis()
        .max(1)
}

/// One `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING`; returns how many were new.
async fn insert_rows(
    client: &Client,
    statements: &Statements,
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
        &columns.fallback_date,
    ];
    if statements.with_vault {
        params.extend([
            &columns.sealed_ip as &(dyn ToSql + Sync),
            &columns.sealed_device_id,
            &key_ids.vault,
        ]);
    }
    // The command tag counts the rows inserted, which are exactly the new ones.
    let inserted = statements.insert.execute(client, &params).await;
    budget::lap(Step::Insert);
    Ok(inserted? as usize)
}

/// Binary COPY of the rows whose message_id is not stored yet; returns how many it copied.
/// The lookup and the start of the COPY go out together, and the lookup's answer arrives before
/// the server asks for data, so this costs one round trip more than the INSERT. A first
/// delivery is not looked up: an index lookup costs about as much as the COPY of its row.
///
/// The rows are planned whole before the COPY starts. Streaming each row into the COPY as it was
/// planned saved the client's idle round trip, but at a third of a vCPU or less (Lambda's 128 to
/// 512 MB) it was slower, 0.83x at 1,000 rows (docs/benchmarks.md, "Lambda shapes"), and was removed.
async fn copy_new_rows(
    client: &Client,
    Bulk { stored_ids, copy }: &Bulk,
    rows: &[LoginRow],
    mask_key_id: &str,
) -> Result<usize, tokio_postgres::Error> {
    // Only redeliveries can be stored already; SQS marks first deliveries (`first_receive`).
    // With its date, the lookup reads one partition.
    let (redelivered, dates): (Vec<&str>, Vec<time::Date>) = rows
        .iter()
        .filter(|row| !row.first_receive)
        .map(|row| (row.message_id.as_str(), row.create_date))
        .unzip();
    let lookup: [&(dyn ToSql + Sync); 2] = [&redelivered, &dates];
    let looking_up = async {
        if redelivered.is_empty() {
            Ok(Vec::new())
        } else {
            let stored = client.query(stored_ids, &lookup).await;
            budget::lap(Step::Lookup);
            stored
        }
    };
    let (stored, sink) = tokio::join!(looking_up, client.copy_in(copy));
    budget::lap(Step::CopyStart);
    // On an error here the sink, if any, is dropped, which aborts the COPY: nothing is stored.
    let stored = stored?;
    let stored: HashSet<&str> = stored.iter().map(|row| row.get(0)).collect();
    let writer = BinaryCopyInWriter::new(sink?, &COPY_COLUMN_TYPES);
    tokio::pin!(writer);
    // In the global lock order (plans are in it already, so this sort is a check).
    let mut new_rows: Vec<&LoginRow> = rows
        .iter()
        .filter(|row| !stored.contains(row.message_id.as_str()))
        .collect();
    new_rows.sort_unstable_by(|a, b| a.message_id.cmp(&b.message_id));
    for row in new_rows {
        copy_row(writer.as_mut(), row, mask_key_id).await?;
    }
    budget::lap(Step::CopyRows);
    let copied = writer.finish().await;
    budget::lap(Step::CopyEnd);
    Ok(copied? as usize)
}

async fn copy_row(
    writer: Pin<&mut BinaryCopyInWriter>,
    row: &LoginRow,
    mask_key_id: &str,
) -> Result<(), tokio_postgres::Error> {
    writer.write(&copy_values(row, &mask_key_id)).await
}

/// One row's values for the COPY, in the order of `COPY_COLUMNS`.
pub fn copy_values<'a>(row: &'a LoginRow, mask_key_id: &'a &'a str) -> [&'a (dyn ToSql + Sync); 9] {
    [
        &row.message_id,
        &row.user_id,
        &row.device_type,
        &row.masked_ip,
        &row.masked_device_id,
        &row.locale,
        &row.app_version,
        &row.create_date,
        mask_key_id,
    ]
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
    fallback_date: Vec<bool>,
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
            fallback_date: rows.iter().map(|r| r.fallback_date).collect(),
            sealed_ip: rows.iter().map(|r| r.sealed_ip.as_deref()).collect(),
            sealed_device_id: rows.iter().map(|r| r.sealed_device_id.as_deref()).collect(),
        }
    }
}
