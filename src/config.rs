//! Environment -> typed configuration. Every error names the variable to fix.

use std::fmt;
use std::path::PathBuf;

use crate::aws::AwsCredentials;
use crate::iam_auth::IamAuth;
use login_etl_core::mask::{KeyTooShort, Masker};
use login_etl_core::vault::RecoveryKey;

/// How to use TLS towards PostgreSQL, with libpq's meanings of `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS if the server offers it, certificate not checked (libpq's default).
    Prefer,
    /// TLS or fail, certificate not checked.
    Require,
    /// TLS, certificate chain checked against the trusted roots, host name not checked.
    VerifyCa,
    /// TLS, certificate chain and host name checked.
    VerifyFull,
}

impl SslMode {
    /// The mode as `sslmode` spells it.
    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(variable: &'static str, value: &str) -> Result<Self, ConfigError> {
        match value {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            _ => Err(ConfigError::Invalid {
                variable,
                why: "sslmode must be one of disable, prefer, require, verify-ca, verify-full"
                    .into(),
            }),
        }
    }
}

/// Which certificate authorities a verifying `sslmode` trusts (`sslrootcert`), as in libpq 16.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCertificates {
    /// Only the certificates in this PEM file (a bundle such as RDS's holds many).
    File(PathBuf),
    /// The system's trusted roots (`sslrootcert=system`): OpenSSL's default store, which
    /// `SSL_CERT_FILE` and `SSL_CERT_DIR` may point elsewhere.
    System,
}

impl RootCertificates {
    fn parse(value: &str) -> Self {
        match value {
            "system" => RootCertificates::System,
            path => RootCertificates::File(PathBuf::from(path)),
        }
    }
}

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
}

impl fmt::Debug for DatabaseConfig {
    // tokio_postgres::Config's Debug redacts the password; we only add the TLS settings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("connection", &self.connection)
            .field("ssl_mode", &self.ssl_mode)
            .field("root_cert", &self.root_cert)
            .field("iam_auth", &self.iam_auth)
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

#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    /// The current masking key with its id and, with `RECOVERY_KEY` set, the vault key.
    pub masker: Masker,
    /// Apply the embedded migrations at start-up (local runs and tests); deployed functions
    /// normally run with a role that cannot create tables, so this is off by default.
    pub auto_migrate: bool,
    /// `PREPARED_STATEMENTS`: true (the default) or false behind a pooler in transaction mode.
    pub statement_mode: StatementMode,
    /// How many invocations the environment runs at once: `AWS_LAMBDA_MAX_CONCURRENCY`, which
    /// Lambda Managed Instances set; 1 (unset) on classic Lambda.
    pub max_concurrency: usize,
    /// CloudWatch namespace of the per-batch EMF metrics (`METRICS_NAMESPACE`, default LoginEtl).
    pub metrics_namespace: String,
    /// `RETAIN_DAYS`: the days the partition job keeps (its `--retain-days`); a message dated
    /// before them is refused rather than stored and then deleted. Unset: no lower bound.
    pub retain_days: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    Missing {
        variable: &'static str,
        hint: &'static str,
    },
    Invalid {
        variable: &'static str,
        why: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Missing { variable, hint } => write!(f, "{variable} is not set: {hint}"),
            ConfigError::Invalid { variable, why } => write!(f, "{variable} is invalid: {why}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads configuration through `lookup`: the environment with the secret's values over it
    /// (`secrets::settings`, as `main` does), or in tests a map. There is no `from_env`: reading
    /// the environment alone would skip `SECRET_ARN`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let masker = masking_key(&lookup, KeySlot::Current)?.ok_or(ConfigError::Missing {
            variable: "MASKING_KEY",
            hint: "set it to a secret of at least 32 bytes (e.g. `openssl rand -hex 32`), kept in a secret store",
        })?;
        let masker = match recovery_key(&lookup)? {
            Some(key) => masker.with_recovery(key),
            None => masker,
        };
        let database = DatabaseConfig::from_lookup(&lookup)?;
        let auto_migrate = flag(&lookup, "AUTO_MIGRATE", false, "use true or false")?;
        let statement_mode = if flag(
            &lookup,
            "PREPARED_STATEMENTS",
            true,
            "use true, or false behind PgBouncer in transaction mode or RDS Proxy",
        )? {
            StatementMode::Prepared
        } else {
            StatementMode::Unnamed
        };
        let max_concurrency = max_concurrency(&lookup)?;
        let metrics_namespace = lookup("METRICS_NAMESPACE")
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "LoginEtl".to_owned());
        let retain_days = match lookup("RETAIN_DAYS").as_deref().map(str::trim) {
            None | Some("") => None,
            Some(value) => match value.parse::<u32>() {
                Ok(days) if days >= 1 => Some(days),
                _ => {
                    return Err(ConfigError::Invalid {
                        variable: "RETAIN_DAYS",
                        why: "it must be a whole number of days of at least 1, the partition job's --retain-days".into(),
                    })
                }
            },
        };
        Ok(Config {
            database,
            masker,
            auto_migrate,
            statement_mode,
            max_concurrency,
            metrics_namespace,
            retain_days,
        })
    }
}

/// `AWS_LAMBDA_MAX_CONCURRENCY`: how many invocations the environment runs at once (1 unset).
pub fn max_concurrency(lookup: &impl Fn(&str) -> Option<String>) -> Result<usize, ConfigError> {
    match lookup("AWS_LAMBDA_MAX_CONCURRENCY")
        .as_deref()
        .map(str::trim)
    {
        None | Some("") => Ok(1),
        Some(value) => match value.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(n as usize),
            _ => Err(ConfigError::Invalid {
                variable: "AWS_LAMBDA_MAX_CONCURRENCY",
                why: "it must be a whole number of at least 1".into(),
            }),
        },
    }
}

/// A true/false variable; unset or empty means `default`, anything but true/false/1/0 is an
/// error that says `what_to_use`.
fn flag(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: bool,
    what_to_use: &str,
) -> Result<bool, ConfigError> {
    match lookup(variable).as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(_) => Err(ConfigError::Invalid {
            variable,
            why: what_to_use.into(),
        }),
    }
}

/// The `sslmode` to use, given the one set (if any) and `sslrootcert`, with libpq 16's rules:
/// without `sslmode`, `prefer`, or `verify-full` with `sslrootcert=system`; the system's roots
/// only with `verify-full`; and a verifying mode only with a `sslrootcert` (libpq would look for
/// `~/.postgresql/root.crt`, which a Lambda function does not have).
fn checked_tls(
    variable: &'static str,
    ssl_mode: Option<SslMode>,
    root_cert: Option<&RootCertificates>,
) -> Result<SslMode, ConfigError> {
    let system = root_cert == Some(&RootCertificates::System);
    match ssl_mode {
        None if system => Ok(SslMode::VerifyFull),
        None => Ok(SslMode::Prefer),
        Some(SslMode::VerifyFull) => Ok(SslMode::VerifyFull),
        Some(mode) if system => Err(ConfigError::Invalid {
            variable,
            why: format!(
                "sslrootcert=system needs sslmode=verify-full, not {}: any certificate the system trusts would do, for any name",
                mode.name()
            ),
        }),
        Some(mode) => Ok(mode),
    }
    .and_then(|mode| match mode {
        SslMode::VerifyCa | SslMode::VerifyFull if root_cert.is_none() => {
            Err(ConfigError::Invalid {
                variable,
                why: format!(
                    "sslmode={} needs sslrootcert: the PEM file of the CA certificates to trust (for RDS, the region's bundle), or sslrootcert=system for the system's",
                    mode.name()
                ),
            })
        }
        mode => Ok(mode),
    })
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

/// The id recorded with vault entries sealed by a key whose id variable is unset.
pub const DEFAULT_RECOVERY_KEY_ID: &str = "r1";

/// Which masking key: the one in use, or the one before a rotation (kept for lookups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySlot {
    Current,
    Previous,
}

impl KeySlot {
    fn variables(self) -> (&'static str, &'static str) {
        match self {
            KeySlot::Current => ("MASKING_KEY", "MASKING_KEY_ID"),
            KeySlot::Previous => ("MASKING_KEY_PREVIOUS", "MASKING_KEY_PREVIOUS_ID"),
        }
    }
}

/// Reads a masking key and its id; `None` when the key variable is unset.
pub fn masking_key(
    lookup: &impl Fn(&str) -> Option<String>,
    slot: KeySlot,
) -> Result<Option<Masker>, ConfigError> {
    let (key_variable, id_variable) = slot.variables();
    let Some(key) = key_value(lookup, key_variable)? else {
        return Ok(None);
    };
    let masker = Masker::new(key.as_bytes()).map_err(|KeyTooShort { actual_bytes }| {
        ConfigError::Invalid {
            variable: key_variable,
            why: format!(
                "it is {actual_bytes} bytes; it must be at least {} (e.g. `openssl rand -hex 32`)",
                login_etl_core::mask::MIN_KEY_BYTES
            ),
        }
    })?;
    let id = key_id(lookup, id_variable, login_etl_core::mask::DEFAULT_KEY_ID)?;
    Ok(Some(masker.with_key_id(id)))
}

/// A key variable's value, the one rule for every key (`MASKING_KEY`, `MASKING_KEY_PREVIOUS`,
/// `RECOVERY_KEY`): unset or empty is `None`; whitespace around it is refused, not trimmed. A
/// key is used byte for byte, so a trailing newline (from `echo` or a file) kept in it would
/// silently change every mask, and trimmed would make two different secrets act as one.
fn key_value(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
) -> Result<Option<String>, ConfigError> {
    let Some(value) = lookup(variable).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.trim() != value {
        return Err(ConfigError::Invalid {
            variable,
            why: "it starts or ends with whitespace (a newline from `echo` or a file?); remove it: a key is used byte for byte".into(),
        });
    }
    Ok(Some(value))
}

fn key_id(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: &str,
) -> Result<String, ConfigError> {
    let id = lookup(variable)
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty());
    let id = id.unwrap_or_else(|| default.to_owned());
    if id.chars().count() > 32 {
        return Err(ConfigError::Invalid {
            variable,
            why: "a key id is at most 32 characters".into(),
        });
    }
    Ok(id)
}

/// Reads `RECOVERY_KEY` (128 hex characters) and `RECOVERY_KEY_ID`; `None` when recovery is off.
pub fn recovery_key(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Option<RecoveryKey>, ConfigError> {
    let Some(hex) = key_value(lookup, "RECOVERY_KEY")? else {
        return Ok(None);
    };
    let id = key_id(lookup, "RECOVERY_KEY_ID", DEFAULT_RECOVERY_KEY_ID)?;
    RecoveryKey::from_hex(&id, &hex)
        .map(Some)
        .map_err(|why| ConfigError::Invalid {
            variable: "RECOVERY_KEY",
            why,
        })
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
        }
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

    /// Connects with an RDS auth token instead of a password. A token is a credential, so it
    /// goes only over TLS; and it is signed for one host name.
    fn with_iam_auth(
        mut self,
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let refuse = |why: &str| {
            Err(ConfigError::Invalid {
                variable: "DATABASE_AUTH",
                why: format!("with iam, {why}"),
            })
        };
        if matches!(self.ssl_mode, SslMode::Disable | SslMode::Prefer) {
            return refuse(&format!(
                "sslmode must be require, verify-ca or verify-full, not {}: the token is a credential",
                self.ssl_mode.name()
            ));
        }
        if self.connection.get_hosts().len() != 1 {
            return refuse("DATABASE_URL must name one host: a token is signed for one host name");
        }
        if self.connection.get_password().is_some() {
            return refuse(
                "DATABASE_URL and PGPASSWORD must hold no password: the token is the password",
            );
        }
        const NEEDED_FOR: &str =
            "DATABASE_AUTH=iam signs tokens with the function's AWS credentials and region (Lambda sets them)";
        let credentials = AwsCredentials::from_lookup(lookup, NEEDED_FOR)?;
        let region = crate::aws::region(lookup, NEEDED_FOR)?;
        self.iam_auth = Some(IamAuth::new(credentials, region));
        Ok(self)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    fn error_of(vars: &[(&str, &str)]) -> String {
        config(vars).unwrap_err().to_string()
    }

    #[test]
    fn reads_a_database_url_with_libpq_ssl_options() {
        let c = config(&[
            ("MASKING_KEY", KEY),
            ("DATABASE_URL", "postgres://etl:pw@db.example:6432/logins?sslmode=verify-full&sslrootcert=/ca.pem&application_name=etl"),
        ])
        .unwrap();
        let db = c.database;
        assert_eq!(db.ssl_mode, SslMode::VerifyFull);
        assert_eq!(
            db.root_cert,
            Some(RootCertificates::File(PathBuf::from("/ca.pem")))
        );
        assert_eq!(db.connection.get_ports(), &[6432]);
        assert_eq!(db.connection.get_dbname(), Some("logins"));
        assert_eq!(db.connection.get_application_name(), Some("etl"));
        assert!(!c.auto_migrate);
    }

    #[test]
    fn tls_is_mandatory_from_require_upwards() {
        use tokio_postgres::config::SslMode as Negotiation;
        for (mode, negotiation) in [
            ("disable", Negotiation::Disable),
            ("prefer", Negotiation::Prefer),
            ("require", Negotiation::Require),
            ("verify-ca", Negotiation::Require),
            ("verify-full", Negotiation::Require),
        ] {
            let db = DatabaseConfig::from_url(&format!(
                "postgres://u@h/d?sslmode={mode}&sslrootcert=/ca.pem"
            ))
            .unwrap();
            assert_eq!(db.connection.get_ssl_mode(), negotiation, "{mode}");
        }
    }

    #[test]
    fn defaults_to_sslmode_prefer_like_libpq() {
        let c = config(&[("MASKING_KEY", KEY), ("DATABASE_URL", "postgres://u@h/d")]).unwrap();
        assert_eq!(c.database.ssl_mode, SslMode::Prefer);
    }

    #[test]
    fn falls_back_to_the_standard_pg_variables() {
        let c = config(&[
            ("MASKING_KEY", KEY),
            ("PGHOST", "10.0.0.5"),
            ("PGPORT", "5433"),
            ("PGUSER", "etl"),
            ("PGPASSWORD", "secret"),
            ("PGSSLMODE", "require"),
        ])
        .unwrap();
        assert_eq!(c.database.connection.get_user(), Some("etl"));
        assert_eq!(c.database.connection.get_dbname(), Some("etl"));
        assert_eq!(c.database.connection.get_ports(), &[5433]);
        assert_eq!(c.database.ssl_mode, SslMode::Require);
    }

    #[test]
    fn errors_name_the_variable_to_fix() {
        let url = ("DATABASE_URL", "postgres://u@h/d");
        assert!(error_of(&[url]).starts_with("MASKING_KEY is not set"));
        assert!(error_of(&[url, ("MASKING_KEY", "short")])
            .starts_with("MASKING_KEY is invalid: it is 5 bytes"));
        assert!(error_of(&[("MASKING_KEY", KEY)]).starts_with("DATABASE_URL is not set"));
        assert!(error_of(&[("MASKING_KEY", KEY), ("PGHOST", "h")]).starts_with("PGUSER is not set"));
        let bad_mode = error_of(&[
            ("MASKING_KEY", KEY),
            ("DATABASE_URL", "postgres://u@h/d?sslmode=verify"),
        ]);
        assert!(
            bad_mode.starts_with("DATABASE_URL is invalid: sslmode must be one of"),
            "{bad_mode}"
        );
        let bad_pg_mode = error_of(&[
            ("MASKING_KEY", KEY),
            ("PGHOST", "h"),
            ("PGUSER", "u"),
            ("PGSSLMODE", "on"),
        ]);
        assert!(
            bad_pg_mode.starts_with("PGSSLMODE is invalid"),
            "{bad_pg_mode}"
        );
        assert!(
            error_of(&[("MASKING_KEY", KEY), url, ("AUTO_MIGRATE", "yes")])
                .starts_with("AUTO_MIGRATE is invalid")
        );
    }

    #[test]
    fn iam_auth_needs_tls_one_host_no_password_and_aws_credentials() {
        let aws = [
            ("MASKING_KEY", KEY),
            ("DATABASE_AUTH", "iam"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret-access-key"),
            ("AWS_REGION", "eu-west-1"),
        ];
        let with_url = |url: &'static str| {
            let mut vars = aws.to_vec();
            vars.push(("DATABASE_URL", url));
            config(&vars)
                .map(|c| c.database.iam_auth.is_some())
                .map_err(|e| e.to_string())
        };
        assert_eq!(with_url("postgres://u@h/d?sslmode=require"), Ok(true));
        for (url, why) in [
            (
                "postgres://u@h/d",
                "sslmode must be require, verify-ca or verify-full, not prefer",
            ),
            ("postgres://u@h/d?sslmode=disable", "not disable"),
            ("postgres://u@h1,h2/d?sslmode=require", "must name one host"),
            (
                "postgres://u:pw@h/d?sslmode=require",
                "must hold no password",
            ),
        ] {
            let error = with_url(url).unwrap_err();
            assert!(
                error.starts_with("DATABASE_AUTH is invalid: with iam,") && error.contains(why),
                "{error}"
            );
        }
        let mut no_region = aws.to_vec();
        no_region.retain(|(name, _)| *name != "AWS_REGION");
        no_region.push(("DATABASE_URL", "postgres://u@h/d?sslmode=require"));
        assert!(error_of(&no_region).starts_with("AWS_REGION is not set"));
        let error = error_of(&[
            ("MASKING_KEY", KEY),
            ("DATABASE_URL", "postgres://u@h/d"),
            ("DATABASE_AUTH", "token"),
        ]);
        assert!(
            error.starts_with("DATABASE_AUTH is invalid: use password"),
            "{error}"
        );
    }

    #[test]
    fn verifying_needs_a_root_certificate_and_the_system_store_needs_verify_full() {
        let parse = |query: &str| {
            DatabaseConfig::from_url(&format!("postgres://u@h/d?{query}"))
                .map(|db| (db.ssl_mode, db.root_cert))
                .map_err(|e| e.to_string())
        };
        for mode in ["verify-ca", "verify-full"] {
            let error = parse(&format!("sslmode={mode}")).unwrap_err();
            assert!(
                error.starts_with(&format!(
                    "DATABASE_URL is invalid: sslmode={mode} needs sslrootcert"
                )),
                "{error}"
            );
        }
        assert_eq!(
            parse("sslrootcert=system"),
            Ok((SslMode::VerifyFull, Some(RootCertificates::System)))
        );
        for weak in ["disable", "prefer", "require", "verify-ca"] {
            let error = parse(&format!("sslmode={weak}&sslrootcert=system")).unwrap_err();
            assert!(
                error.contains("sslrootcert=system needs sslmode=verify-full"),
                "{error}"
            );
        }
        let error = config(&[
            ("MASKING_KEY", KEY),
            ("PGHOST", "h"),
            ("PGUSER", "u"),
            ("PGSSLMODE", "verify-full"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("PGSSLMODE is invalid: sslmode=verify-full needs sslrootcert"),
            "{error}"
        );
    }

    #[test]
    fn ssl_options_in_the_url_are_percent_decoded_like_libpq() {
        let db = DatabaseConfig::from_url(
            "postgres://u@h/d?sslmode=verify%2Dfull&sslrootcert=/etc/my%20certs/ca%2Bold.pem",
        )
        .unwrap();
        assert_eq!(db.ssl_mode, SslMode::VerifyFull);
        assert_eq!(
            db.root_cert,
            Some(RootCertificates::File(PathBuf::from(
                "/etc/my certs/ca+old.pem"
            )))
        );
        for bad in ["%", "%2", "%zz", "%ff"] {
            let error = DatabaseConfig::from_url(&format!("postgres://u@h/d?sslrootcert={bad}"))
                .unwrap_err()
                .to_string();
            assert!(
                error.starts_with("DATABASE_URL is invalid: a `%`"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn every_key_refuses_surrounding_whitespace_naming_the_variable() {
        let url = ("DATABASE_URL", "postgres://u@h/d");
        let recovery = "ab".repeat(64);
        for variable in ["MASKING_KEY", "MASKING_KEY_PREVIOUS", "RECOVERY_KEY"] {
            let clean = if variable == "RECOVERY_KEY" {
                recovery.as_str()
            } else {
                KEY
            };
            for padded in [
                format!("{clean}\n"),
                format!(" {clean}"),
                format!("{clean}\t"),
            ] {
                let mut vars = vec![url, ("MASKING_KEY", KEY)];
                vars.retain(|(name, _)| *name != variable);
                vars.push((variable, &padded));
                let vars: HashMap<String, String> = vars
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let lookup = |name: &str| vars.get(name).cloned();
                let error = match variable {
                    "MASKING_KEY_PREVIOUS" => masking_key(&lookup, KeySlot::Previous)
                        .err()
                        .map(|e| e.to_string()),
                    _ => Config::from_lookup(lookup).err().map(|e| e.to_string()),
                }
                .unwrap_or_else(|| panic!("{variable} {padded:?} was accepted"));
                assert!(
                    error.starts_with(&format!(
                        "{variable} is invalid: it starts or ends with whitespace"
                    )),
                    "{error}"
                );
                assert!(!error.contains(clean), "the error shows the key: {error}");
            }
        }
    }

    #[test]
    fn prepared_statements_are_on_unless_turned_off_for_a_pooler() {
        let url = ("DATABASE_URL", "postgres://u@h/d");
        let mode = |value: Option<&str>| {
            let mut vars = vec![url, ("MASKING_KEY", KEY)];
            vars.extend(value.map(|v| ("PREPARED_STATEMENTS", v)));
            config(&vars).map(|c| c.statement_mode)
        };
        assert_eq!(mode(None), Ok(StatementMode::Prepared));
        assert_eq!(mode(Some("true")), Ok(StatementMode::Prepared));
        assert_eq!(mode(Some("false")), Ok(StatementMode::Unnamed));
        assert_eq!(mode(Some(" 0 ")), Ok(StatementMode::Unnamed));
        let error = error_of(&[url, ("MASKING_KEY", KEY), ("PREPARED_STATEMENTS", "off")]);
        assert!(
            error
                .starts_with("PREPARED_STATEMENTS is invalid: use true, or false behind PgBouncer"),
            "{error}"
        );
    }

    #[test]
    fn concurrency_comes_from_lambda_managed_instances_or_is_one() {
        let url = ("DATABASE_URL", "postgres://u@h/d");
        let concurrency = |value: &str| {
            config(&[
                url,
                ("MASKING_KEY", KEY),
                ("AWS_LAMBDA_MAX_CONCURRENCY", value),
            ])
            .map(|c| c.max_concurrency)
        };
        assert_eq!(
            config(&[url, ("MASKING_KEY", KEY)])
                .unwrap()
                .max_concurrency,
            1
        );
        assert_eq!(concurrency("16"), Ok(16));
        for bad in ["0", "-1", "many"] {
            let error = concurrency(bad).unwrap_err().to_string();
            assert!(
                error.starts_with("AWS_LAMBDA_MAX_CONCURRENCY is invalid"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn reads_key_ids_and_the_optional_recovery_key() {
        let url = ("DATABASE_URL", "postgres://u@h/d");
        let c = config(&[url, ("MASKING_KEY", KEY)]).unwrap();
        assert_eq!(c.masker.key_id(), "k1");
        assert_eq!(c.masker.recovery_key_id(), None);
        let hex = "ab".repeat(64);
        let c = config(&[
            url,
            ("MASKING_KEY", KEY),
            ("MASKING_KEY_ID", "2026-11"),
            ("RECOVERY_KEY", &hex),
        ])
        .unwrap();
        assert_eq!(c.masker.key_id(), "2026-11");
        assert_eq!(c.masker.recovery_key_id(), Some("r1"));
        let error = error_of(&[url, ("MASKING_KEY", KEY), ("RECOVERY_KEY", "abc")]);
        assert!(
            error.starts_with("RECOVERY_KEY is invalid: it must be 128 hex characters"),
            "{error}"
        );
        assert!(!error.contains("abc"), "{error}");
        let long_id = "i".repeat(33);
        let error = error_of(&[url, ("MASKING_KEY", KEY), ("MASKING_KEY_ID", &long_id)]);
        assert!(error.starts_with("MASKING_KEY_ID is invalid"), "{error}");
    }

    #[test]
    fn reads_the_previous_masking_key_for_lookups() {
        let lookup = |name: &str| match name {
            "MASKING_KEY_PREVIOUS" => Some(KEY.to_string()),
            "MASKING_KEY_PREVIOUS_ID" => Some("k0".to_string()),
            _ => None,
        };
        let previous = masking_key(&lookup, KeySlot::Previous).unwrap().unwrap();
        assert_eq!(previous.key_id(), "k0");
        assert!(masking_key(&lookup, KeySlot::Current).unwrap().is_none());
    }

    #[test]
    fn errors_never_contain_the_password() {
        let message = error_of(&[
            ("MASKING_KEY", KEY),
            ("DATABASE_URL", "postgres://u:hunter2@h:notaport/d"),
        ]);
        assert!(message.starts_with("DATABASE_URL is invalid"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        let debug = format!(
            "{:?}",
            config(&[
                ("MASKING_KEY", KEY),
                ("DATABASE_URL", "postgres://u:hunter2@h/d")
            ])
            .unwrap()
        );
        assert!(
            !debug.contains("hunter2") && !debug.contains(KEY),
            "{debug}"
        );
    }
}
