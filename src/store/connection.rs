//! One open connection and its statements. A `Connection` exists only with all of its statements
//! ready and the schema checked, so after a reconnect none can be missing: there is nothing to
//! reset, and the type, not a comment, keeps the order of connect and prepare.

use std::sync::Mutex;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Socket, Statement};

use super::errors::{connect_detail, connect_error, describe, schema_error};
use super::settings::{Credentials, DatabaseConfig, StatementMode};
use super::sql::{
    begin_with_deadline, migration_script, COPY_ROWS, INSERT_ROWS, INSERT_ROWS_AND_VAULT,
    INSERT_ROWS_AND_VAULT_TYPES, INSERT_ROWS_TYPES, STORED_IDS,
};
use super::tls::{self, Tls};
use super::write::milliseconds_until;
use super::StoreError;

/// The longest we wait for a connection, so a dead host yields a retryable error well before
/// the invocation deadline rather than a timeout of the whole function.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long past the invocation deadline a write waits for the server's answer. The server ends
/// the write itself at the deadline (the transaction's statement_timeout), so its answer comes
/// a round trip later and says for certain that nothing was committed, and the connection stays
/// usable. Well inside the 500 ms the handler keeps before Lambda's own deadline.
pub(super) const SERVER_ANSWER_GRACE: Duration = Duration::from_millis(200);

/// How long closing a connection may take: Lambda allows 500 ms for shutdown, of which the
/// drain takes up to 320 (`shutdown.rs`); the connections close at the same time.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(150);

/// Where to connect and how: everything a reconnect needs.
pub(super) struct Target {
    pub config: DatabaseConfig,
    pub tls: Tls,
    pub with_vault: bool,
    pub statement_mode: StatementMode,
    /// The credentials read again after the server refused those of `config` (rotation); every
    /// later connect uses them. `None` until then.
    reread: Mutex<Option<Credentials>>,
}

impl Target {
    pub fn new(
        config: DatabaseConfig,
        with_vault: bool,
        statement_mode: StatementMode,
    ) -> Result<Self, StoreError> {
        Ok(Target {
            tls: tls::connector(&config)?,
            config,
            with_vault,
            statement_mode,
            reread: Mutex::new(None),
        })
    }

    /// The settings to connect with: the credentials read again, if any; with IAM
    /// authentication, a fresh token as the password (config checks there is one host and a
    /// user).
    fn connection_settings(&self) -> Result<tokio_postgres::Config, StoreError> {
        let config = &self.config;
        let mut settings = config.connection.clone();
        if let Some(credentials) = self.reread.lock().unwrap().as_ref() {
            settings
                .user(&credentials.user)
                .password(credentials.password.as_bytes());
        }
        if let Some(iam) = &config.iam_auth {
            let host = match config.connection.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(name)) => name.clone(),
                _ => {
                    return Err(StoreError::Unavailable(
                        "IAM authentication needs a TCP host".into(),
                    ))
                }
            };
            let port = config
                .connection
                .get_ports()
                .first()
                .copied()
                .unwrap_or(5432);
            let user = config.connection.get_user().unwrap_or_default();
            let token = iam.token(&host, port, user).map_err(|e| {
                StoreError::Unavailable(format!("cannot make the RDS auth token: {e}"))
            })?;
            settings.password(token);
        }
        Ok(settings)
    }
}

/// One statement, prepared on this connection or sent with its text each time.
pub(super) enum Sql {
    /// Parsed once when the connection opened (a named prepared statement).
    Prepared(Statement),
    /// Parsed with each execution as the unnamed statement, which lives only until the next
    /// statement: nothing outlives the transaction, so a pooler may hand the server connection
    /// to another client after it.
    Unnamed {
        text: &'static str,
        types: &'static [Type],
    },
}

impl Sql {
    pub async fn execute(
        &self,
        client: &Client,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        match self {
            Sql::Prepared(statement) => client.execute(statement, params).await,
            Sql::Unnamed { text, types } => {
                let typed: Vec<(&(dyn ToSql + Sync), Type)> =
                    params.iter().copied().zip(types.iter().cloned()).collect();
                client.execute_typed(text, &typed).await
            }
        }
    }
}

/// The statements a batch write needs.
pub(super) struct Statements {
    /// The batch INSERT; with the vault, its entries go in the same statement.
    pub insert: Sql,
    pub with_vault: bool,
    /// The lookup and the COPY for large batches. Only with prepared statements (tokio-postgres
    /// runs a COPY only as a named statement) and without the vault (which needs the INSERT's CTE).
    pub bulk: Option<Bulk>,
}

pub(super) struct Bulk {
    pub stored_ids: Statement,
    pub copy: Statement,
}

pub(super) struct Connection {
    pub client: Client,
    pub statements: Statements,
    /// The task that drives the socket; it ends when the client is dropped.
    task: JoinHandle<()>,
}

impl Connection {
    /// Connects, applies the migrations if `migrate`, prepares the statements (with
    /// `StatementMode::Prepared`), and checks the schema with a write of no rows, rolled back:
    /// it fails when a table, a column, the unique index on message_id or the deadline function
    /// is missing, or the role may not write. The prepares go out together, and so does the
    /// check: one round trip each.
    pub async fn open(
        target: &Target,
        migrate: bool,
        deadline: Instant,
    ) -> Result<Self, StoreError> {
        let (client, task) = open_client(target, deadline).await?;
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
        let checking = async {
            // The prepares run in the check's transaction, under its server-side deadline: a
            // prepare waits for a lock on the table as a write does, and must end at the
            // deadline on the server too (and when the client is gone), not run on behind it.
            let begin = begin_with_deadline(milliseconds_until(deadline));
            let (begun, statements) = tokio::join!(
                client.batch_execute(&begin),
                statements_for(&client, target)
            );
            begun?;
            let statements = statements?;
            let connection = Connection {
                client,
                statements,
                task,
            };
            connection.write_nothing().await?;
            Ok(connection)
        };
        match timeout_at(deadline + SERVER_ANSWER_GRACE, checking).await {
            Err(_) => Err(StoreError::Unavailable(
                "the schema check did not finish before the deadline".into(),
            )),
            Ok(Err(e)) => Err(schema_error(&e)),
            Ok(Ok(connection)) => Ok(connection),
        }
    }

    /// Drops the connection at once, its socket closed, with a write still unanswered: a write
    /// that a pooler still queues is then never sent to the server, and one the server runs is
    /// ended by its own statement_timeout, so nothing is left to cancel. Closing the socket is an
    /// ordinary client disconnect for PgBouncer, unlike a cancel request cut short, which
    /// crashes 1.18 (pgbouncer/pgbouncer#801).
    pub fn abandon(self) {
        self.task.abort();
    }

    /// Closes the connection the way the protocol says (a Terminate message), so the server ends
    /// its backend at once instead of when it notices the socket is gone.
    pub async fn close(self) {
        let Connection { client, task, .. } = self;
        // Dropping the client ends the request stream; the task then sends Terminate and ends.
        drop(client);
        if tokio::time::timeout(CLOSE_TIMEOUT, task).await.is_err() {
            tracing::warn!("the database connection did not close in time");
        }
    }
}

/// Opens a client, within `deadline` and at most `CONNECT_TIMEOUT`; returns it with the task
/// that drives its socket. When the server refuses the credentials and they can be read again
/// (`DatabaseConfig::credentials_source`), reads them once and connects once more: a rotation
/// costs the one connect, never a loop.
async fn open_client(
    target: &Target,
    deadline: Instant,
) -> Result<(Client, JoinHandle<()>), StoreError> {
    let connect_deadline = deadline.min(Instant::now() + CONNECT_TIMEOUT);
    let refused = match connect_once(target, connect_deadline).await {
        Err(Refused::Credentials(e)) => e,
        other => return other.map_err(Refused::into_store_error),
    };
    let Some(source) = &target.config.credentials_source else {
        return Err(refused);
    };
    tracing::warn!(
        error = %refused,
        "the database refused the credentials; reading them again from the credentials secret"
    );
    let credentials = match timeout_at(connect_deadline, source.read()).await {
        Err(_) => return Err(refused),
        Ok(Err(e)) => {
            return Err(StoreError::Unavailable(format!(
                "{refused}; reading the credentials again failed: {e}"
            )))
        }
        Ok(Ok(credentials)) => credentials,
    };
    *target.reread.lock().unwrap() = Some(credentials);
    connect_once(target, connect_deadline)
        .await
        .map_err(Refused::into_store_error)
}

/// Why a connect failed: the credentials (which may be read again), or anything else.
enum Refused {
    Credentials(StoreError),
    Other(StoreError),
}

impl Refused {
    fn into_store_error(self) -> StoreError {
        match self {
            Refused::Credentials(e) | Refused::Other(e) => e,
        }
    }
}

/// One connect with the credentials held now.
async fn connect_once(
    target: &Target,
    connect_deadline: Instant,
) -> Result<(Client, JoinHandle<()>), Refused> {
    let settings = target.connection_settings().map_err(Refused::Other)?;
    match &target.tls {
        Tls::Off => connect_with(target, &settings, NoTls, connect_deadline).await,
        Tls::On(connector) => {
            connect_with(target, &settings, connector.clone(), connect_deadline).await
        }
    }
}

/// `open_client` with one kind of connector: a connection's type names its stream's, so each
/// kind gets a task of its own.
async fn connect_with<T>(
    target: &Target,
    settings: &tokio_postgres::Config,
    tls: T,
    connect_deadline: Instant,
) -> Result<(Client, JoinHandle<()>), Refused>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let connecting = settings.connect(tls);
    let (client, connection) = match timeout_at(connect_deadline, connecting).await {
        Err(_) => {
            return Err(Refused::Other(connect_error(
                &target.config,
                "no answer in time",
            )))
        }
        Ok(Err(e)) => {
            let error = connect_error(&target.config, &connect_detail(&e));
            return Err(if refuses_credentials(&e) {
                Refused::Credentials(error)
            } else {
                Refused::Other(error)
            });
        }
        Ok(Ok(pair)) => pair,
    };
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %describe(&e), "database connection ended");
        }
    });
    Ok((client, task))
}

/// The server refused the user or its password: SQLSTATE 28P01 (invalid_password, also what
/// PostgreSQL answers for an unknown user) or 28000 (invalid_authorization_specification, e.g.
/// pg_hba's "no entry" or a role that may not log in).
fn refuses_credentials(error: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    error.code().is_some_and(|code| {
        code == &SqlState::INVALID_PASSWORD
            || code == &SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    })
}

/// The statements for `target`'s mode, prepared now if that is the mode.
async fn statements_for(
    client: &Client,
    target: &Target,
) -> Result<Statements, tokio_postgres::Error> {
    let (text, types) = if target.with_vault {
        (INSERT_ROWS_AND_VAULT, INSERT_ROWS_AND_VAULT_TYPES)
    } else {
        (INSERT_ROWS, INSERT_ROWS_TYPES)
    };
    let with_vault = target.with_vault;
    match target.statement_mode {
        StatementMode::Unnamed => Ok(Statements {
            insert: Sql::Unnamed { text, types },
            with_vault,
            bulk: None,
        }),
        StatementMode::Prepared if with_vault => Ok(Statements {
            insert: Sql::Prepared(client.prepare(text).await?),
            with_vault,
            bulk: None,
        }),
        StatementMode::Prepared => {
            let (insert, stored_ids, copy) = tokio::join!(
                client.prepare(text),
                client.prepare(STORED_IDS),
                client.prepare(COPY_ROWS)
            );
            Ok(Statements {
                insert: Sql::Prepared(insert?),
                with_vault,
                bulk: Some(Bulk {
                    stored_ids: stored_ids?,
                    copy: copy?,
                }),
            })
        }
    }
}

/// A plain client with the function's connection and TLS handling, for the command-line tools.
pub async fn connect_client(
    config: DatabaseConfig,
    deadline: Instant,
) -> Result<Client, StoreError> {
    let target = Target::new(config, false, StatementMode::default())?;
    let (client, _task) = open_client(&target, deadline).await?;
    Ok(client)
}
