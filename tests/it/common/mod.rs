//! Test helpers: a fresh, migrated database per test on a real PostgreSQL, SQS events as Lambda
//! delivers them, an independent HMAC, and a TCP proxy that can cut the database off.

pub mod emulator;
pub mod lambda;
pub mod localstack;
pub mod moto;
pub mod pgbouncer;

// What the benchmarks start too lives in login-etl-test-support.
pub use login_etl_test_support::database::{connect, with_database};
pub use login_etl_test_support::{hand_to_postgres_user, is_root};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::SqsMessage;
use hmac::{Hmac, KeyInit, Mac};
use login_etl::handler::Processor;
use login_etl::store::DatabaseConfig;
use login_etl::store::StatementMode;
use login_etl::store::{Store, StoreOptions, MIGRATIONS};
use login_etl_core::mask::Masker;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::{Client, NoTls};

pub const KEY: &str = "test-masking-key-0123456789abcdef-not-for-production";

/// A login body as producers send it.
pub const GOOD_BODY: &str = r#"{"user_id": "424cdd21-063a-43a7-b91b-7ca1a833afae", "app_version": "2.3.0", "device_type": "android", "ip": "199.172.111.135", "locale": "RU", "device_id": "593-47-5928"}"#;

/// The server tests may create databases on: `make test` starts one and sets DATABASE_URL.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL must point at a PostgreSQL server where tests may create databases; \
         `make test` starts a throw-away one and sets it",
    )
}

/// A database of its own for one test, created and migrated on the test server, and dropped
/// when the value is, also when an assertion fails.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let db = Self::empty().await;
        let client = db.client().await;
        for sql in MIGRATIONS {
            client.batch_execute(sql).await.expect("migration applies");
        }
        db
    }

    /// A fresh database without the schema.
    pub async fn empty() -> TestDb {
        capture_logs();
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "test_{}_{}_{}",
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let admin = connect(&admin_url()).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let url = with_database(&admin_url(), &name);
        TestDb { name, url }
    }

    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }

    pub fn config(&self) -> DatabaseConfig {
        DatabaseConfig::from_url(&self.url).expect("test URL parses")
    }

    /// A processor like the Lambda's, on this database.
    pub async fn processor(&self) -> Processor {
        processor_on(self.config()).await
    }

    pub async fn count(&self) -> i64 {
        self.count_of("user_logins").await
    }

    /// How many rows `table` holds (`pii_vault`, a partition, ...).
    pub async fn count_of(&self, table: &str) -> i64 {
        self.client()
            .await
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0)
    }

    pub async fn stored_message_ids(&self) -> Vec<String> {
        let rows = self
            .client()
            .await
            .query("SELECT message_id FROM user_logins WHERE message_id IS NOT NULL ORDER BY message_id", &[])
            .await
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }

    /// The rows `sql` selects, as pairs of its first two columns.
    pub async fn pairs<A, B>(&self, sql: &str) -> Vec<(A, B)>
    where
        A: for<'r> tokio_postgres::types::FromSql<'r>,
        B: for<'r> tokio_postgres::types::FromSql<'r>,
    {
        let rows = self.client().await.query(sql, &[]).await.unwrap();
        rows.iter().map(|row| (row.get(0), row.get(1))).collect()
    }

    /// A client holding `LOCK TABLE user_logins IN ACCESS EXCLUSIVE MODE` in an open
    /// transaction, as a DBA's migration might: every write waits until it commits.
    pub async fn lock_the_table(&self) -> Client {
        let blocker = self.client().await;
        blocker
            .batch_execute("BEGIN; LOCK TABLE user_logins IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        blocker
    }

    /// A rule Rust validation does not know, as a DBA might add one: the database refuses rows
    /// of the user `banned` (SQLSTATE 23514, constraint `no_banned_users`).
    pub async fn refuse_banned_user(&self) {
        self.client()
            .await
            .batch_execute("ALTER TABLE user_logins ADD CONSTRAINT no_banned_users CHECK (user_id <> 'banned')")
            .await
            .unwrap();
    }

    /// A processor like the Lambda's on a fresh database: the set-up most tests start with.
    pub async fn with_processor() -> (TestDb, Processor) {
        Self::with_processor_sending(StatementMode::default()).await
    }

    /// A new database and a processor on it that sends statements the `mode` way.
    pub async fn with_processor_sending(mode: StatementMode) -> (TestDb, Processor) {
        let db = TestDb::new().await;
        let masker = Masker::new(KEY.as_bytes()).unwrap();
        let processor = processor_with(db.config(), masker, mode).await;
        (db, processor)
    }
}

impl Drop for TestDb {
    /// Drop is not async, and may run inside a runtime (or while a test unwinds): the database
    /// is dropped from a thread of its own with a runtime of its own.
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test database");
            runtime.block_on(async {
                let (admin, connection) = tokio_postgres::connect(&admin_url(), NoTls).await?;
                tokio::spawn(connection);
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if !std::thread::panicking() {
            dropped
                .expect("the drop thread does not panic")
                .expect("drop the test database");
        }
    }
}

pub async fn processor_on(config: DatabaseConfig) -> Processor {
    processor_masking_with(config, Masker::new(KEY.as_bytes()).unwrap()).await
}

/// A processor on `config` with `masker` (and so with the vault when it has a recovery key).
pub async fn processor_masking_with(config: DatabaseConfig, masker: Masker) -> Processor {
    processor_with(config, masker, StatementMode::default()).await
}

/// A processor sending its statements the `statement_mode` way (PREPARED_STATEMENTS).
pub async fn processor_with(
    config: DatabaseConfig,
    masker: Masker,
    statement_mode: StatementMode,
) -> Processor {
    let options = StoreOptions {
        with_vault: masker.recovery_key_id().is_some(),
        statement_mode,
        ..StoreOptions::default()
    };
    let store = Store::connect(config, options, in_seconds(10))
        .await
        .expect("store connects to a migrated database");
    Processor::new(masker, store)
}

pub fn in_seconds(seconds: u64) -> Instant {
    Instant::now() + Duration::from_secs(seconds)
}

/// HMAC-SHA256 computed here, apart from the crate's Masker, to check masks independently.
pub fn expected_mask(canonical: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(canonical.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A record exactly as the SQS event source mapping delivers it.
pub fn sqs_record(message_id: &str, body: &str) -> SqsMessage {
    sqs_record_on("login-queue", message_id, body)
}

pub fn sqs_record_on(queue: &str, message_id: &str, body: &str) -> SqsMessage {
    let value = json!({
        "messageId": message_id,
        "receiptHandle": format!("AQEB{message_id}"),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1732540000000",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1732540000100"
        },
        "messageAttributes": {},
        "md5OfBody": "7b270e59b47ff90a553787216d55d91d",
        "eventSource": "aws:sqs",
        "eventSourceARN": format!("arn:aws:sqs:us-east-1:000000000000:{queue}"),
        "awsRegion": "us-east-1"
    });
    serde_json::from_value(value).expect("valid SQS record")
}

/// Valid login messages with ids `{prefix}-00000`, `{prefix}-00001`, ... for `numbers`.
pub fn good_batch(prefix: &str, numbers: std::ops::Range<usize>) -> Vec<SqsMessage> {
    numbers
        .map(|i| sqs_record(&format!("{prefix}-{i:05}"), GOOD_BODY))
        .collect()
}

/// The messageIds a batch answered as failed, from the response SQS would get.
pub fn failed_ids(outcome: &login_etl_core::batch::BatchOutcome) -> Vec<String> {
    outcome
        .response()
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect()
}

/// A login body with one field replaced (or removed, with `None`).
pub fn body_with(field: &str, value: Option<serde_json::Value>) -> String {
    let mut body: serde_json::Value = serde_json::from_str(GOOD_BODY).unwrap();
    match value {
        Some(v) => body[field] = v,
        None => {
            body.as_object_mut().unwrap().remove(field);
        }
    }
    body.to_string()
}

/// A TCP proxy in front of the test PostgreSQL: `cut()` drops every connection and refuses new
/// ones, as a database that went away would; `restore()` lets connections through again.
///
/// A proxy `start_holding_server_side` forwards what the client sends but never the end of its
/// connection: the server's side stays open, as when Lambda ends an environment and the network
/// never carries a FIN. Only a Terminate message the client sent ends the server's backend.
pub struct Proxy {
    pub port: u16,
    open: Arc<Mutex<bool>>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream_port: u16) -> Proxy {
        Self::start_with(upstream_port, true).await
    }

    pub async fn start_holding_server_side(upstream_port: u16) -> Proxy {
        Self::start_with(upstream_port, false).await
    }

    async fn start_with(upstream_port: u16, forward_close: bool) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(Mutex::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (open_in, links_in) = (open.clone(), links.clone());
        let acceptor = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !*open_in.lock().unwrap() {
                    drop(inbound); // refused: closed at once
                    continue;
                }
                let link = tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", upstream_port)).await
                    else {
                        return;
                    };
                    if forward_close {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    } else {
                        let (mut from_client, mut to_client) = inbound.split();
                        let (mut from_server, mut to_server) = outbound.split();
                        let _ = tokio::join!(
                            tokio::io::copy(&mut from_client, &mut to_server),
                            tokio::io::copy(&mut from_server, &mut to_client)
                        );
                        // Until the proxy is dropped: the server's side is never shut down.
                        std::future::pending::<()>().await;
                    }
                });
                links_in.lock().unwrap().push(link);
            }
        });
        Proxy {
            port,
            open,
            links,
            acceptor,
        }
    }

    pub fn cut(&self) {
        *self.open.lock().unwrap() = false;
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    pub fn restore(&self) {
        *self.open.lock().unwrap() = true;
    }

    /// The database URL through this proxy.
    pub fn url_for(&self, db: &TestDb) -> String {
        url_through(db, self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.acceptor.abort();
    }
}

/// `db`'s URL with the server's port replaced by `port` (a proxy's or a pooler's).
pub fn url_through(db: &TestDb, port: u16) -> String {
    db.url
        .replace(&format!(":{}/", server_port()), &format!(":{port}/"))
}

/// The port of the test PostgreSQL.
pub fn server_port() -> u16 {
    DatabaseConfig::from_url(&admin_url())
        .unwrap()
        .connection
        .get_ports()[0]
}

/// A PostgreSQL cluster of a test's own (for restarts and TLS), started with scripts/pg.sh.
pub struct PrivateServer {
    pub dir: String,
    pub bin: String,
    pub port: u16,
    pub url: String,
}

impl PrivateServer {
    /// `extra_options` are passed to the server, e.g. `-c ssl=on`. Fast and not crash-safe
    /// (fsync off), like the shared test server.
    pub fn start(extra_options: &str) -> PrivateServer {
        Self::start_with(extra_options, false)
    }

    /// A server with fsync and synchronous_commit on, for tests that crash it: without them a
    /// commit acknowledged before the crash may be gone after it.
    pub fn durable() -> PrivateServer {
        Self::start_with("", true)
    }

    fn start_with(extra_options: &str, durable: bool) -> PrivateServer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg.sh");
        let output = std::process::Command::new("bash")
            .args([script, "start"])
            .env("PG_EXTRA_OPTS", extra_options)
            .env("PG_DURABLE", if durable { "1" } else { "0" })
            .output()
            .expect("scripts/pg.sh runs");
        assert!(
            output.status.success(),
            "pg.sh start failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let exports = String::from_utf8(output.stdout).unwrap();
        let value = |name: &str| -> String {
            exports
                .split_whitespace()
                .find_map(|word| word.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("pg.sh printed no {name}: {exports}"))
                .to_owned()
        };
        PrivateServer {
            dir: value("PG_TEST_DIR"),
            bin: value("PG_BIN"),
            port: value("PGPORT").parse().unwrap(),
            url: value("DATABASE_URL"),
        }
    }

    /// Runs pg_ctl as the cluster's owner: `pg_ctl(&["restart", "-m", "fast"])`.
    pub fn pg_ctl(&self, args: &[&str]) {
        let pg_ctl = format!("{}/pg_ctl", self.bin);
        let data = format!("{}/data", self.dir);
        let mut command = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--", &pg_ctl]);
            c
        } else {
            std::process::Command::new(&pg_ctl)
        };
        let status = command
            .args(["-D", &data, "-w", "-l", &format!("{}/server.log", self.dir)])
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "pg_ctl {args:?} failed");
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg.sh");
        let _ = std::process::Command::new("bash")
            .args([script, "stop", &self.dir])
            .status();
    }
}

/// Sends this test process's logs (at TRACE, through the function's own filter) to a file in
/// `LOGIN_ETL_LOG_DIR`, which `make test` scans for PII after the suite. Without the variable,
/// logs go nowhere unless `TEST_LOG` is set (then to stderr).
pub fn capture_logs() {
    use login_etl::logging::{install, LogSettings};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let settings = LogSettings {
            level: Some("trace".into()),
            json: false,
        };
        if let Ok(dir) = std::env::var("LOGIN_ETL_LOG_DIR") {
            let exe = std::env::current_exe().unwrap();
            let name = exe.file_name().unwrap().to_string_lossy().into_owned();
            let path =
                std::path::Path::new(&dir).join(format!("{name}-{}.log", std::process::id()));
            let file = std::fs::File::create(path).expect("log file in LOGIN_ETL_LOG_DIR");
            install(&settings, Mutex::new(file));
        } else if std::env::var_os("TEST_LOG").is_some() {
            install(&settings, tracing_subscriber::fmt::TestWriter::new());
        }
    });
}

/// The binary `name` that `cargo build` put beside this test binary's folder
/// (`target/debug/deps/..`): the function's, or a tool's of another workspace crate, which an
/// integration test cannot name with `CARGO_BIN_EXE_*`. `build` says how to make it.
pub fn built_binary(name: &str, build: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let binary = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join(name);
    assert!(
        binary.exists(),
        "{} is missing: build it with `{build}` (make test does)",
        binary.display()
    );
    binary
}

/// Runs the `login-etl-pii` tool on `db` with only `env` besides DATABASE_URL: (succeeded,
/// stdout, stderr). The tool is a crate of its own (crates/pii).
pub fn pii_tool(db: &TestDb, env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let binary = built_binary("login-etl-pii", "cargo build -p login-etl-pii");
    let output = std::process::Command::new(binary)
        .args(args)
        .env_clear()
        .env("DATABASE_URL", &db.url)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
