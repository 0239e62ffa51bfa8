//! TLS towards PostgreSQL with libpq's sslmode meanings, against a server started with ssl=on,
//! a test CA made here, and a pg_hba.conf that refuses every connection without TLS.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use login_etl::config::DatabaseConfig;
use login_etl::store::{Store, StoreError, StoreOptions};

/// A CA, a server certificate for the name `localhost` only, and an unrelated second CA.
struct Certificates {
    dir: PathBuf,
}

impl Certificates {
    fn make() -> Certificates {
        let dir = std::env::temp_dir().join(format!("login-etl-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("openssl runs");
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        for ca in ["ca", "other-ca"] {
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=login-etl test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ]);
        }
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ]);
        // Only TLS connections are allowed in, so a connection that works proves TLS was used.
        std::fs::write(
            dir.join("pg_hba.conf"),
            "hostssl all all 127.0.0.1/32 trust\nlocal all all trust\n",
        )
        .unwrap();
        // The server runs as the postgres user and insists on owning its key.
        hand_to_postgres_user(&dir);
        Command::new("chmod")
            .args(["600"])
            .arg(dir.join("server.key"))
            .status()
            .unwrap();
        Command::new("chmod")
            .args(["755"])
            .arg(&dir)
            .status()
            .unwrap();
        Certificates { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn server_options(&self) -> String {
        format!(
            "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={} -c hba_file={}",
            self.path("server.crt"),
            self.path("server.key"),
            self.path("pg_hba.conf")
        )
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn url(server: &PrivateServer, host: &str, params: &str) -> String {
    format!(
        "postgres://postgres@{host}:{}/login_etl?{params}",
        server.port
    )
}

async fn connects(url: &str) -> Result<(), StoreError> {
    let config = DatabaseConfig::from_url(url).expect("URL parses");
    let migrate = StoreOptions {
        migrate: true,
        ..StoreOptions::default()
    };
    Store::connect(config, migrate, in_seconds(10))
        .await
        .map(drop)
}

#[tokio::test]
async fn sslmode_is_honoured_like_libpq() {
    let certificates = Certificates::make();
    let server = PrivateServer::start(&certificates.server_options());
    let ca = certificates.path("ca.pem");
    let other_ca = certificates.path("other-ca.pem");

    // verify-full: the right CA and the certificate's host name.
    connects(&url(
        &server,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .unwrap();

    // verify-full refuses a certificate from another CA ...
    let error = connects(&url(
        &server,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={other_ca}"),
    ))
    .await
    .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error}");
    // ... and a host name the certificate does not name.
    connects(&url(
        &server,
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .unwrap_err();

    // verify-ca checks the chain but not the name.
    connects(&url(
        &server,
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .await
    .unwrap();
    connects(&url(
        &server,
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={other_ca}"),
    ))
    .await
    .unwrap_err();

    // require and prefer encrypt without checking; disable cannot get in (hostssl only).
    connects(&url(&server, "127.0.0.1", "sslmode=require"))
        .await
        .unwrap();
    connects(&url(&server, "127.0.0.1", "sslmode=prefer"))
        .await
        .unwrap();
    connects(&url(&server, "127.0.0.1", "sslmode=disable"))
        .await
        .unwrap_err();
}

/// libpq trusts only the file `sslrootcert` names, and the system's store only with
/// `sslrootcert=system`. Here the system's store (OpenSSL's SSL_CERT_FILE) holds the server's
/// CA: a `sslrootcert` naming another CA must still be refused.
#[tokio::test]
async fn only_the_sslrootcert_file_is_trusted_and_system_means_the_system_store() {
    let certificates = Certificates::make();
    let server = PrivateServer::start(&certificates.server_options());
    // Each test runs in a process of its own (nextest), so this changes no other test.
    std::env::set_var("SSL_CERT_FILE", certificates.path("ca.pem"));
    let other_ca = certificates.path("other-ca.pem");

    for mode in ["verify-full", "verify-ca", "require"] {
        let refused = connects(&url(
            &server,
            "localhost",
            &format!("sslmode={mode}&sslrootcert={other_ca}"),
        ))
        .await;
        assert!(
            matches!(refused, Err(StoreError::Unavailable(_))),
            "{mode} with another CA's file: {refused:?}"
        );
    }
    connects(&url(&server, "localhost", "sslrootcert=system"))
        .await
        .expect("the system's store holds the server's CA");
    connects(&url(
        &server,
        "127.0.0.1",
        "sslmode=verify-full&sslrootcert=system",
    ))
    .await
    .expect_err("verify-full with the system's store still checks the name");

    // A path with a space, percent-encoded in the URL as libpq reads it.
    let spaced = certificates.dir.join("server ca.pem");
    std::fs::copy(certificates.path("ca.pem"), &spaced).unwrap();
    let encoded = spaced.display().to_string().replace(' ', "%20");
    connects(&url(
        &server,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={encoded}"),
    ))
    .await
    .expect("the decoded path is read");
}

#[tokio::test]
async fn verify_full_never_falls_back_to_plain_tcp() {
    // The shared test server has no TLS at all.
    let plain = DatabaseConfig::from_url(&admin_url()).unwrap();
    let port = plain.connection.get_ports()[0];
    let error = connects(&format!(
        "postgres://postgres@localhost:{port}/login_etl?sslmode=verify-full&sslrootcert=system"
    ))
    .await
    .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error}");
}

#[tokio::test]
async fn an_unreadable_root_certificate_is_a_clear_error() {
    let missing = Path::new("/nonexistent/ca.pem");
    let config = DatabaseConfig::from_url(&format!(
        "postgres://u@127.0.0.1:1/d?sslmode=verify-full&sslrootcert={}",
        missing.display()
    ))
    .unwrap();
    let error = Store::connect(config, StoreOptions::default(), in_seconds(5))
        .await
        .err()
        .expect("no connection");
    assert!(
        error
            .to_string()
            .contains("cannot read sslrootcert /nonexistent/ca.pem"),
        "{error}"
    );
}
