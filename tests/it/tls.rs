//! TLS towards PostgreSQL with libpq's sslmode meanings, against a server started with ssl=on,
//! a test CA made here, and a pg_hba.conf that refuses every connection without TLS.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use login_etl::aws::AwsCredentials;
use login_etl::store::DatabaseConfig;
use login_etl::store::IamAuth;
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
    connects_with(DatabaseConfig::from_url(url).expect("URL parses")).await
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

/// With `sslmode=disable` the function builds no TLS connector, so it reads no certificate store
/// before it connects (building native-tls's connector reads the system's whatever it is told to
/// trust, most of the cold start, docs/benchmarks.md). `SSL_CERT_FILE` names a FIFO nobody writes to:
/// any read of the store blocks there. With `sslmode=prefer`, which needs the connector, the same
/// start blocks, so the check can fail.
#[tokio::test]
async fn sslmode_disable_reads_no_certificate_store_before_connecting() {
    let fifo = std::env::temp_dir().join(format!("login-etl-no-store-{}", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", fifo.display());
    for (sslmode, reaches_the_database) in [("disable", true), ("prefer", false)] {
        let database = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = database.local_addr().unwrap().port();
        let mut function = tokio::process::Command::new(env!("CARGO_BIN_EXE_login-etl"))
            .env_clear()
            .env("AWS_LAMBDA_FUNCTION_NAME", "login-etl")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
            .env(
                "DATABASE_URL",
                format!("postgres://etl@127.0.0.1:{port}/etl?sslmode={sslmode}"),
            )
            .env("MASKING_KEY", "test-masking-key-0123456789abcdef-0123")
            .env("SSL_CERT_FILE", &fifo)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn login-etl");
        let wait = if reaches_the_database { 30 } else { 3 };
        let attempt =
            tokio::time::timeout(std::time::Duration::from_secs(wait), database.accept()).await;
        function.kill().await.ok();
        assert_eq!(
            attempt.is_ok(),
            reaches_the_database,
            "sslmode={sslmode}: connect attempt within {wait} s"
        );
    }
    std::fs::remove_file(&fifo).ok();
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

/// A fixed signing time for tokens compared with another generator or given to a server.
fn signing_time() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)
}

fn iam_auth(session_token: Option<&str>) -> IamAuth {
    let credentials = AwsCredentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session_token,
    );
    IamAuth::new(credentials, "eu-west-1".into()).with_clock(signing_time)
}

/// The token botocore (the AWS SDK for Python, from the SAM tools' venv) makes for the same
/// inputs at the same time.
fn botocore_token(host: &str, port: u16, user: &str, session_token: Option<&str>) -> String {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv-sam/bin/python");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rds_auth_token_reference.py"
    );
    let output = Command::new(python)
        .args([
            script,
            host,
            &port.to_string(),
            user,
            "eu-west-1",
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token.unwrap_or("-"),
            "1700000000",
        ])
        .output()
        .expect("the SAM tools' Python runs (`make test` installs .venv-sam)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn rds_auth_tokens_match_botocore_byte_for_byte() {
    for (host, port, user, session_token) in [
        ("db.example", 5432, "login_etl", None),
        (
            "logins.cluster-abc.eu-west-1.rds.amazonaws.com",
            6432,
            "etl_writer",
            Some("FwoGZXIvYXdzEJr//////////wEaDN+session/token=="),
        ),
    ] {
        let ours = iam_auth(session_token).token(host, port, user).unwrap();
        assert_eq!(ours, botocore_token(host, port, user, session_token));
    }
}

/// PostgreSQL, asking this role for a password over TLS, accepts the token the function makes
/// (set as the role's password ahead of time: RDS checks tokens itself); a token signed a
/// second later is refused, so the token is what was sent.
#[tokio::test]
async fn postgres_accepts_the_token_as_the_password() {
    let certificates = Certificates::make();
    std::fs::write(
        certificates.dir.join("pg_hba.conf"),
        "hostssl all iam_user 127.0.0.1/32 scram-sha-256\nhostssl all all 127.0.0.1/32 trust\nlocal all all trust\n",
    )
    .unwrap();
    hand_to_postgres_user(&certificates.dir);
    let server = PrivateServer::start(&certificates.server_options());
    let auth = iam_auth(None);
    let token = auth.token("localhost", server.port, "iam_user").unwrap();
    let admin = DatabaseConfig::from_url(&url(&server, "localhost", "sslmode=require")).unwrap();
    let (client, connection) = admin.connection.connect(tls_for_tests()).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "CREATE ROLE iam_user LOGIN PASSWORD '{token}'; GRANT ALL ON SCHEMA public TO iam_user;"
        ))
        .await
        .unwrap();
    let as_iam_user = format!(
        "postgres://iam_user@localhost:{}/login_etl?sslmode=verify-full&sslrootcert={}",
        server.port,
        certificates.path("ca.pem")
    );
    let mut config = DatabaseConfig::from_url(&as_iam_user).unwrap();
    config.iam_auth = Some(auth);
    connects_with(config.clone())
        .await
        .expect("the token is the password");

    fn a_second_later() -> std::time::SystemTime {
        signing_time() + std::time::Duration::from_secs(1)
    }
    config.iam_auth = Some(iam_auth(None).with_clock(a_second_later));
    let refused = connects_with(config).await.unwrap_err().to_string();
    assert!(refused.contains("28P01"), "{refused}");
}

fn tls_for_tests() -> postgres_native_tls::MakeTlsConnector {
    let connector = native_tls::TlsConnector::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    postgres_native_tls::MakeTlsConnector::new(connector)
}

async fn connects_with(config: DatabaseConfig) -> Result<(), StoreError> {
    let migrate = StoreOptions {
        migrate: true,
        ..StoreOptions::default()
    };
    Store::connect(config, migrate, in_seconds(10))
        .await
        .map(drop)
}
