//! What went wrong with the database, said without values: PostgreSQL's messages can quote row
//! data (`invalid input syntax for type integer: "..."`), and those may be personal data.

use std::fmt;

use tokio_postgres::error::SqlState;

use super::settings::DatabaseConfig;

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

/// How a database error affects the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ErrorKind {
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

pub(super) fn classify(error: &tokio_postgres::Error) -> ErrorKind {
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

/// What a misconfigured pooler makes of named prepared statements: a server connection that
/// another client prepared on (42P05), or one that is not where this client prepared (26000).
const POOLER_HINT: &str = "a connection pooler in transaction mode (PgBouncer, RDS Proxy) is sharing server connections between clients; set PREPARED_STATEMENTS=false";

/// A database error by SQLSTATE, column and constraint, never by its message.
pub(super) fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("SQLSTATE {}", db.code().code());
            // Connection errors (class 08) are about the link, never about a row: their message
            // is what to act on, e.g. PgBouncer's "server login has been failing, try again
            // later (server_login_retry)", which it sends as 08P01.
            if db.code().code().starts_with("08") {
                text.push_str(&format!(" ({})", db.message()));
            }
            if let Some(column) = db.column() {
                text.push_str(&format!(", column {column}"));
            }
            if let Some(constraint) = db.constraint() {
                text.push_str(&format!(", constraint {constraint}"));
            }
            if [
                SqlState::DUPLICATE_PSTATEMENT,
                SqlState::INVALID_SQL_STATEMENT_NAME,
            ]
            .contains(db.code())
            {
                text.push_str(&format!(": {POOLER_HINT}"));
            }
            text
        }
        None if error.is_closed() => "connection closed".into(),
        // Client-side errors (I/O, TLS, protocol) carry no row data.
        None => error.to_string(),
    }
}

/// A failed schema check (prepare, or the write of no rows): usually the schema is missing or
/// the role may not write, which an operator must fix.
pub(super) fn schema_error(error: &tokio_postgres::Error) -> StoreError {
    const HINT: &str = "apply migrations/*.sql in order (psql -f; the latest is 005_partitions.sql), or start the function once with AUTO_MIGRATE=true";
    let missing = [SqlState::UNDEFINED_TABLE, SqlState::UNDEFINED_COLUMN];
    match error.code() {
        Some(code) if missing.contains(code) => StoreError::Schema(format!(
            "a table or column the writes need is missing (user_logins with message_id, user_logins_fallback_dates, pii_vault.last_seen) ({}): {HINT}",
            describe(error)
        )),
        // ON CONFLICT (message_id, create_date) finds no unique index: the table predates
        // migration 005, which partitions it and makes that index.
        Some(code) if code == &SqlState::INVALID_COLUMN_REFERENCE => StoreError::Schema(format!(
            "user_logins has no unique index on (message_id, create_date) ({}): apply migrations/005_partitions.sql (it partitions the table; see README, \"Upgrading to partitions\"), or start the function once with AUTO_MIGRATE=true",
            describe(error)
        )),
        Some(code) if code == &SqlState::UNDEFINED_FUNCTION => StoreError::Schema(format!(
            "function login_etl_write_deadline is missing ({}): apply migrations/*.sql in order (psql -f; at least migrations/004_write_deadline.sql), or start the function once with AUTO_MIGRATE=true",
            describe(error)
        )),
        Some(code) if code == &SqlState::INSUFFICIENT_PRIVILEGE => StoreError::Schema(format!(
            "the database role may not write ({}): GRANT SELECT, INSERT ON user_logins, user_logins_fallback_dates TO <role> (with RECOVERY_KEY also the grants on pii_vault in docs/privacy.md)",
            describe(error)
        )),
        _ if classify(error) == ErrorKind::Transient => StoreError::Unavailable(describe(error)),
        _ => StoreError::Database(describe(error)),
    }
}

/// A failed connect, naming where it went and what to check.
pub(super) fn connect_error(config: &DatabaseConfig, detail: &str) -> StoreError {
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
    StoreError::Unavailable(format!(
        "could not connect to PostgreSQL at {}:{} (check DATABASE_URL or the PG* variables): {detail}",
        hosts.join(","),
        ports.join(",")
    ))
}

/// What a connect error says: login errors (bad password, unknown database) are about
/// configuration, not rows, so the server's message is safe to show.
pub(super) fn connect_detail(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}
