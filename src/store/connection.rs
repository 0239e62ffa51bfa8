//! One open connection and the statements prepared on it. A `Connection` exists only with all
//! of its statements prepared, so after a reconnect none can be missing: there is nothing to
//! reset, and the type, not a comment, keeps the order of connect and prepare.

use std::time::Duration;

use postgres_native_tls::MakeTlsConnector;
use tokio::time::{timeout_at, Instant};
use tokio_postgres::{Client, Statement};

use super::errors::{connect_detail, connect_error, describe, prepare_error};
use super::sql::{migration_script, COPY_ROWS, INSERT_ROWS, INSERT_ROWS_AND_VAULT, STORED_IDS};
use super::{tls, StoreError};
use crate::config::DatabaseConfig;

/// The longest we wait for a connection, so a dead host yields a retryable error well before
/// the invocation deadline rather than a timeout of the whole function.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a cancel request may take; well inside the handler's deadline margin.
pub(super) const CANCEL_TIMEOUT: Duration = Duration::from_millis(300);

/// Where to connect and how: everything a reconnect needs.
pub(super) struct Target {
    pub config: DatabaseConfig,
    pub tls: MakeTlsConnector,
    pub with_vault: bool,
}

impl Target {
    pub fn new(config: DatabaseConfig, with_vault: bool) -> Result<Self, StoreError> {
        Ok(Target {
            tls: tls::connector(&config)?,
            config,
            with_vault,
        })
    }
}

/// The statements a batch write needs, by whether rows carry vault entries.
pub(super) enum Statements {
    /// Rows only: the INSERT for small batches, the lookup and the COPY for large ones.
    Rows {
        insert: Statement,
        stored_ids: Statement,
        copy: Statement,
    },
    /// Rows and vault entries: one INSERT whatever the size (the vault needs its CTE).
    RowsAndVault { insert: Statement },
}

pub(super) struct Connection {
    pub client: Client,
    pub statements: Statements,
}

impl Connection {
    /// Connects and prepares every statement; `migrate` applies the migrations in between.
    /// Preparing is the schema check: it fails when a table, a column or the unique index on
    /// message_id is missing. The statements go out together: one round trip.
    pub async fn open(
        target: &Target,
        migrate: bool,
        deadline: Instant,
    ) -> Result<Self, StoreError> {
        let client = open_client(target, deadline).await?;
        if migrate {
            match timeout_at(deadline, client.batch_execute(&migration_script())).await {
                Err(_) => {
                    return Err(StoreError::Unavailable(
                        "migrations did not finish before the deadline".into(),
                    ))
                }
                Ok(Err(e)) => {
                    // Migrations carry no row values, so the server's message is safe to show.
                    return Err(StoreError::Database(format!(
                        "applying migrations failed: {e}"
                    )));
                }
                Ok(Ok(())) => {}
            }
        }
        let preparing = async {
            if target.with_vault {
                let insert = client.prepare(INSERT_ROWS_AND_VAULT).await?;
                Ok(Statements::RowsAndVault { insert })
            } else {
                let (insert, stored_ids, copy) = tokio::join!(
                    client.prepare(INSERT_ROWS),
                    client.prepare(STORED_IDS),
                    client.prepare(COPY_ROWS)
                );
                Ok(Statements::Rows {
                    insert: insert?,
                    stored_ids: stored_ids?,
                    copy: copy?,
                })
            }
        };
        let statements = match timeout_at(deadline, preparing).await {
            Err(_) => {
                return Err(StoreError::Unavailable(
                    "prepare did not finish before the deadline".into(),
                ))
            }
            Ok(Err(e)) => return Err(prepare_error(&e)),
            Ok(Ok(statements)) => statements,
        };
        Ok(Connection { client, statements })
    }

    /// Asks PostgreSQL to stop whatever this connection runs, bounded so it fits in the margin
    /// kept before Lambda's deadline.
    pub async fn cancel_running_statement(&self, tls: &MakeTlsConnector) {
        let token = self.client.cancel_token();
        match tokio::time::timeout(CANCEL_TIMEOUT, token.cancel_query(tls.clone())).await {
            Ok(Ok(())) => tracing::warn!("statement cancelled at the invocation deadline"),
            _ => tracing::warn!(
                "could not cancel the statement at the deadline; it may still commit"
            ),
        }
    }
}

/// Opens a client, within `deadline` and at most `CONNECT_TIMEOUT`.
async fn open_client(target: &Target, deadline: Instant) -> Result<Client, StoreError> {
    let connect_deadline = deadline.min(Instant::now() + CONNECT_TIMEOUT);
    let connecting = target.config.connection.connect(target.tls.clone());
    let (client, connection) = match timeout_at(connect_deadline, connecting).await {
        Err(_) => return Err(connect_error(&target.config, "no answer in time")),
        Ok(Err(e)) => return Err(connect_error(&target.config, &connect_detail(&e))),
        Ok(Ok(pair)) => pair,
    };
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %describe(&e), "database connection ended");
        }
    });
    Ok(client)
}

/// A plain client with the function's connection and TLS handling, for the command-line tools.
pub async fn connect_client(
    config: DatabaseConfig,
    deadline: Instant,
) -> Result<Client, StoreError> {
    open_client(&Target::new(config, false)?, deadline).await
}
