//! The TLS connector for a `sslmode`, with libpq's meanings.

use std::fs;

use native_tls::{Certificate, TlsConnector};
use postgres_native_tls::MakeTlsConnector;

use super::StoreError;
use crate::config::{DatabaseConfig, SslMode};

pub(super) fn connector(config: &DatabaseConfig) -> Result<MakeTlsConnector, StoreError> {
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
        // A bundle (such as RDS's) holds many certificates.
        let certificates = Certificate::stack_from_pem(&pem).map_err(|e| {
            StoreError::Tls(format!(
                "sslrootcert {} is not a PEM certificate: {e}",
                path.display()
            ))
        })?;
        if certificates.is_empty() {
            return Err(StoreError::Tls(format!(
                "sslrootcert {} holds no PEM certificate",
                path.display()
            )));
        }
        for certificate in certificates {
            builder.add_root_certificate(certificate);
        }
    }
    let connector = builder
        .build()
        .map_err(|e| StoreError::Tls(e.to_string()))?;
    Ok(MakeTlsConnector::new(connector))
}
