//! The store's own settings: where and how to reach PostgreSQL, `DATABASE_URL` (a libpq URL) or
//! the `PG*` variables, how statements are sent (`PREPARED_STATEMENTS`), and where rotated
//! credentials are read again.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::iam::IamAuth;
use super::sslmode::{checked_tls, RootCertificates, SslMode};
use crate::config_error::ConfigError;

/// Where and how to connect to PostgreSQL.
#[derive(Clone)]
pub struct DatabaseConfig {
    /// Host, port, user, password, database: everything but TLS, which tokio-postgres handles
    /// only as disable/prefer/require.
    pub connection: tokio_postgres::Config,
    pub ssl_mode: SslMode,
    /// The CA certificates to trust (`sslrootcert`); required by verify-ca and verify-full.
    pub root_cert: Option<RootCertificates>,
    /// With `DATABASE_AUTH=iam`, the password is an RDS auth token made at every connect.
    pub iam_auth: Option<IamAuth>,
    /// Where the user and password can be read again after the server refuses them (a secret
    /// that RDS or a rotation function rotates, `DATABASE_SECRET_ARN`).
    pub credentials_source: Option<Arc<dyn CredentialsSource>>,
}

/// A database user and its password; `Debug` shows the user only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where the database credentials are read again while the function runs. Rotation changes
/// the password (or, in the alternating-users scheme, the user too) in the database and in the
/// secret, while warm environments still hold what they read at start: the store reads the
/// source once when the server refuses the credentials in use (SQLSTATE 28P01 or 28000), then
/// connects once more with what it now holds.
pub trait CredentialsSource: Send + Sync {
    /// The credentials the source holds now. The error names the source, never a value.
    fn read(&self) -> Pin<Box<dyn Future<Output = Result<Credentials, ConfigError>> + Send + '_>>;
}

impl fmt::Debug for DatabaseConfig {
    // tokio_postgres::Config's Debug redacts the password; we only add the TLS settings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("connection", &self.connection)
            .field("ssl_mode", &self.ssl_mode)
            .field("root_cert", &self.root_cert)
            .field("iam_auth", &self.iam_auth)
            .field("rereads_credentials", &self.credentials_source.is_some())
            .finish()
    }
}

/// How the store's statements reach the server (`PREPARED_STATEMENTS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StatementMode {
    /// Named statements, prepared once when a connection opens; large batches go by COPY. The
    /// fastest, for a connection that is the function's alone: direct, or through a pooler in
    /// session mode or one that tracks prepared statements.
    #[default]
    Prepared,
    /// Unnamed statements, parsed with each write, and no COPY: no state outlives a write's
    /// transaction, for PgBouncer in transaction mode and RDS Proxy (which pins sessions that
    /// prepare statements).
    Unnamed,
}

impl DatabaseConfig {
    /// Joins the connection settings with the TLS mode, telling tokio-postgres whether TLS is
    /// off, optional or mandatory (it would otherwise fall back to plain TCP even for
    /// verify-full when the server offers no TLS).
    pub fn new(
        mut connection: tokio_postgres::Config,
        ssl_mode: SslMode,
        root_cert: Option<RootCertificates>,
    ) -> Self {
        use tokio_postgres::config::SslMode as Negotiation;
        connection.ssl_mode(match ssl_mode {
            SslMode::Disable => Negotiation::Disable,
            SslMode::Prefer => Negotiation::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Negotiation::Require,
        });
        DatabaseConfig {
            connection,
            ssl_mode,
            root_cert,
            iam_auth: None,
            credentials_source: None,
        }
    }

    /// The same, reading the credentials again from `source` after the server refuses them.
    pub fn with_credentials_source(mut self, source: Arc<dyn CredentialsSource>) -> Self {
        self.credentials_source = Some(source);
        self
    }

    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let config = match lookup("DATABASE_URL").filter(|url| !url.trim().is_empty()) {
            Some(url) => Self::from_url(url.trim())?,
            None => Self::from_pg_variables(lookup)?,
        };
        match lookup("DATABASE_AUTH").as_deref().map(str::trim) {
            None | Some("") | Some("password") => Ok(config),
            Some("iam") => config.with_iam_auth(lookup),
            Some(_) => Err(ConfigError::Invalid {
                variable: "DATABASE_AUTH",
                why: "use password (the default) or iam (an RDS auth token at every connect)"
                    .into(),
            }),
        }
    }

    /// Parses a libpq-style URL. `sslmode` and `sslrootcert` are taken out here because
    /// tokio-postgres rejects verify-ca/verify-full and does not know `sslrootcert`.
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        const VARIABLE: &str = "DATABASE_URL";
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut ssl_mode = None;
        let mut root_cert = None;
        let mut passed_on = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            // Values are percent-decoded, as libpq does (a path with a space is `%20`);
            // tokio-postgres decodes those it is passed itself.
            match pair.split_once('=') {
                Some(("sslmode", value)) => {
                    ssl_mode = Some(SslMode::parse(
                        VARIABLE,
                        &percent_decoded(VARIABLE, value)?,
                    )?)
                }
                Some(("sslrootcert", value)) => {
                    root_cert = Some(RootCertificates::parse(&percent_decoded(VARIABLE, value)?))
                }
                _ => passed_on.push(pair),
            }
        }
        let rest = if passed_on.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", passed_on.join("&"))
        };
        let connection: tokio_postgres::Config =
            rest.parse().map_err(|e| ConfigError::Invalid {
                variable: VARIABLE,
                // tokio-postgres's parse errors name the option, never the password.
                why: format!(
                    "{e} (expected postgres://user:password@host:port/dbname?sslmode=require)"
                ),
            })?;
        let ssl_mode = checked_tls(VARIABLE, ssl_mode, root_cert.as_ref())?;
        Ok(DatabaseConfig::new(connection, ssl_mode, root_cert))
    }

    fn from_pg_variables(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let host = get("PGHOST").ok_or(ConfigError::Missing {
            variable: "DATABASE_URL",
            hint: "set DATABASE_URL=postgres://user:password@host:5432/dbname (or PGHOST, PGUSER, PGPASSWORD, PGDATABASE)",
        })?;
        let user = get("PGUSER").ok_or(ConfigError::Missing {
            variable: "PGUSER",
            hint: "PGHOST is set, so PGUSER must name the database role",
        })?;
        let mut connection = tokio_postgres::Config::new();
        connection.host(&host).user(&user);
        connection.dbname(get("PGDATABASE").as_deref().unwrap_or(&user));
        if let Some(port) = get("PGPORT") {
            let port = port.parse().map_err(|_| ConfigError::Invalid {
                variable: "PGPORT",
                why: "it must be a port number such as 5432".into(),
            })?;
            connection.port(port);
        }
        if let Some(password) = get("PGPASSWORD") {
            connection.password(password);
        }
        let ssl_mode = match get("PGSSLMODE") {
            Some(mode) => Some(SslMode::parse("PGSSLMODE", &mode)?),
            None => None,
        };
        let root_cert = get("PGSSLROOTCERT").map(|value| RootCertificates::parse(&value));
        let ssl_mode = checked_tls("PGSSLMODE", ssl_mode, root_cert.as_ref())?;
        Ok(DatabaseConfig::new(connection, ssl_mode, root_cert))
    }
}

/// `value` with its `%XX` escapes decoded, as libpq decodes a connection URI's parts.
fn percent_decoded(variable: &'static str, value: &str) -> Result<String, ConfigError> {
    let invalid = || {
        ConfigError::Invalid {
        variable,
        why: "a `%` in the query string must start an escape such as %20, and escapes must make UTF-8".into(),
    }
    };
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(invalid)?;
            let hex = std::str::from_utf8(hex).map_err(|_| invalid())?;
            decoded.push(u8::from_str_radix(hex, 16).map_err(|_| invalid())?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| invalid())
}
