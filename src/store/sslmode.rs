//! libpq's TLS rules: the `sslmode` values, `sslrootcert`, and which combinations are allowed.

use std::path::PathBuf;

use crate::config_error::ConfigError;

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

    pub(super) fn parse(variable: &'static str, value: &str) -> Result<Self, ConfigError> {
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
    pub(super) fn parse(value: &str) -> Self {
        match value {
            "system" => RootCertificates::System,
            path => RootCertificates::File(PathBuf::from(path)),
        }
    }
}

/// The `sslmode` to use, given the one set (if any) and `sslrootcert`, with libpq 16's rules:
/// without `sslmode`, `prefer`, or `verify-full` with `sslrootcert=system`; the system's roots
/// only with `verify-full`; and a verifying mode only with a `sslrootcert` (libpq would look for
/// `~/.postgresql/root.crt`, which a Lambda function does not have).
pub(super) fn checked_tls(
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
