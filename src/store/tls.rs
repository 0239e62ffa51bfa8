//! The TLS connector for a `sslmode` and `sslrootcert`, with libpq's meanings.

use std::fs;
use std::path::Path;

use native_tls::{Certificate, TlsConnector, TlsConnectorBuilder};
use postgres_native_tls::MakeTlsConnector;

use super::settings::DatabaseConfig;
use super::sslmode::{RootCertificates, SslMode};
use super::StoreError;

/// How the function's connections are made: in plain TCP, or through native-tls.
#[derive(Clone)]
pub(super) enum Tls {
    /// `sslmode=disable`. No connector at all: building native-tls's loads the system's CA
    /// bundle whatever it is asked to trust (docs/benchmarks.md, "Cold start"), most of the cold
    /// start before connecting, for a connection that never negotiates TLS.
    Off,
    On(MakeTlsConnector),
}

/// What of the server's certificate is checked.
enum Verify {
    Nothing,
    Chain,
    ChainAndName,
}

pub(super) fn connector(config: &DatabaseConfig) -> Result<Tls, StoreError> {
    let root_file = matches!(config.root_cert, Some(RootCertificates::File(_)));
    let verify = match config.ssl_mode {
        SslMode::Disable => return Ok(Tls::Off),
        SslMode::Prefer => Verify::Nothing,
        // libpq: with a root certificate file, require checks the chain as verify-ca does.
        SslMode::Require if root_file => Verify::Chain,
        SslMode::Require => Verify::Nothing,
        SslMode::VerifyCa => Verify::Chain,
        SslMode::VerifyFull => Verify::ChainAndName,
    };
    let mut builder = TlsConnector::builder();
    match verify {
        Verify::Nothing => {
            builder
                .danger_accept_invalid_certs(true)
                .danger_accept_invalid_hostnames(true);
        }
        Verify::Chain => {
            builder.danger_accept_invalid_hostnames(true);
        }
        Verify::ChainAndName => {}
    }
    match (&verify, &config.root_cert) {
        // The system's roots: OpenSSL's default store.
        (Verify::Chain | Verify::ChainAndName, Some(RootCertificates::System)) => {}
        // Only the file's certificates, as libpq: not the system's as well. (native-tls still
        // reads the system's bundle first, then empties the store: time, not trust.)
        (Verify::Chain | Verify::ChainAndName, Some(RootCertificates::File(path))) => {
            builder.disable_built_in_roots(true);
            trust_only(&mut builder, path)?;
        }
        _ => {
            builder.disable_built_in_roots(true);
        }
    }
    let connector = builder
        .build()
        .map_err(|e| StoreError::Tls(e.to_string()))?;
    Ok(Tls::On(MakeTlsConnector::new(connector)))
}

/// Adds every certificate of the PEM file at `path` as a trusted root.
fn trust_only(builder: &mut TlsConnectorBuilder, path: &Path) -> Result<(), StoreError> {
    let pem = fs::read(path)
        .map_err(|e| StoreError::Tls(format!("cannot read sslrootcert {}: {e}", path.display())))?;
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
    Ok(())
}
