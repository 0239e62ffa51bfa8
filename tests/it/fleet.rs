//! The function as a fleet runs it: many execution environments of the real binary (under
//! cargo-lambda's emulator) behind a real PgBouncer with fewer server connections than
//! environments; one environment serving several invocations at once (Lambda Managed Instances);
//! what the server is left with when Lambda shuts an environment down; and what the function
//! sends that RDS Proxy would pin a session for.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::emulator::{Emulator, Environments};
use crate::common::pgbouncer::{PgBouncer, PoolMode};
use crate::common::*;
use serde_json::{json, Value};

const INSTANCES: usize = 8;
const ROUNDS: usize = 4;
/// A recovery key (128 hex characters) for the runs with the vault.
const RECOVERY_KEY: &str = "4242424242424242424242424242424242424242424242424242424242424242\
                            4242424242424242424242424242424242424242424242424242424242424242";

/// How the fleet reaches the database and what it writes.
struct Fleet {
    pool_mode: PoolMode,
    /// Server connections PgBouncer may open for the database.
    pool_size: usize,
    prepared_statements: bool,
    vault: bool,
}

/// Instance `instance`'s batch in `round`: every message is in the batches of two instances at
/// once, as SQS delivers a message twice. Rounds alternate batches of 10 (the INSERT) and 150
/// (the COPY, with prepared statements).
fn overlapping_batch(round: usize, instance: usize) -> (Vec<String>, Value) {
    let size = if round.is_multiple_of(2) { 10 } else { 150 };
    let distinct = INSTANCES * size / 2;
    let ids: Vec<String> = (0..size)
        .map(|k| format!("fleet-{round}-{:05}", (instance * size / 2 + k) % distinct))
        .collect();
    let records: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(k, id)| {
            let body = body_with("user_id", Some(json!(format!("user-{:02}", k % 20))));
            sqs_record(id, &body)
        })
        .collect();
    (ids, json!({ "Records": records }))
}

/// Runs `ROUNDS` rounds of `INSTANCES` invocations at once and checks what a user would: no
/// environment failed to start, no batch failed, no message failed, every message is one row,
/// and the pool's server connections are left with the default statement_timeout.
async fn run(fleet: Fleet) {
    let db = TestDb::new().await;
    let bouncer = PgBouncer::start(fleet.pool_mode, fleet.pool_size);
    let url = bouncer.url_for(&db);
    let prepared = if fleet.prepared_statements {
        "true"
    } else {
        "false"
    };
    let mut env = vec![
        ("DATABASE_URL", url.as_str()),
        ("MASKING_KEY", KEY),
        ("PREPARED_STATEMENTS", prepared),
    ];
    if fleet.vault {
        env.push(("RECOVERY_KEY", RECOVERY_KEY));
    }
    let environments = Environments {
        instances: INSTANCES,
        max_concurrency: 1,
        ..Environments::default()
    };
    let emulator = Emulator::start_with(&env, environments);
    let mut stored = BTreeSet::new();
    for round in 0..ROUNDS {
        let mut invocations = Vec::new();
        for instance in 0..INSTANCES {
            let (ids, event) = overlapping_batch(round, instance);
            stored.extend(ids);
            let invoke_url = emulator.url();
            invocations.push(tokio::spawn(async move {
                invoke_over_http(&invoke_url, &event).await
            }));
        }
        for invocation in invocations {
            let answer = invocation.await.unwrap();
            assert_eq!(
                answer,
                json!({ "batchItemFailures": [] }),
                "round {round}: {fleet_log}",
                fleet_log = tail(&emulator.log())
            );
        }
    }
    let log = emulator.log();
    assert!(
        !log.contains("could not start"),
        "an environment failed to start: {}",
        tail(&log)
    );
    let started = log.matches("Running `").count();
    assert!(
        started > 1,
        "the emulator ran {started} environments: the fleet did not run"
    );
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT message_id) FROM user_logins",
            &[],
        )
        .await
        .unwrap();
    let (rows, distinct): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!((rows, distinct), (stored.len() as i64, stored.len() as i64));
    if fleet.vault {
        let entries: i64 = client
            .query_one("SELECT count(*) FROM pii_vault", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(entries, 2, "one ip and one device id, sealed once each");
    }
    // Every server connection of the pool at once, each held by a transaction: none may carry a
    // setting the function made. The environments end first: in session mode they hold every
    // server connection of the pool.
    drop(emulator);
    let mut others = Vec::new();
    for _ in 0..fleet.pool_size {
        let other = connect(&url).await;
        other.batch_execute("BEGIN").await.unwrap();
        let shown = other.simple_query("SHOW statement_timeout").await.unwrap();
        let value = shown.iter().find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        });
        assert_eq!(value.as_deref(), Some("0"), "another client of the pool");
        others.push(other);
    }
}

async fn invoke_over_http(url: &str, event: &Value) -> Value {
    Emulator::invoke_url(url, event).await
}

fn tail(log: &str) -> &str {
    &log[log.len().saturating_sub(3000)..]
}

#[tokio::test]
async fn eight_environments_behind_pgbouncer_in_transaction_mode_store_every_message_once() {
    run(Fleet {
        pool_mode: PoolMode::Transaction,
        pool_size: 3,
        prepared_statements: false,
        vault: false,
    })
    .await;
}

#[tokio::test]
async fn eight_environments_with_the_vault_behind_pgbouncer_in_transaction_mode() {
    run(Fleet {
        pool_mode: PoolMode::Transaction,
        pool_size: 3,
        prepared_statements: false,
        vault: true,
    })
    .await;
}

/// In session mode every client holds a server connection, so the pool must be as large as the
/// fleet; prepared statements and the COPY work as on a direct connection.
#[tokio::test]
async fn eight_environments_behind_pgbouncer_in_session_mode_with_prepared_statements() {
    run(Fleet {
        pool_mode: PoolMode::Session,
        pool_size: INSTANCES,
        prepared_statements: true,
        vault: false,
    })
    .await;
}

#[tokio::test]
async fn eight_environments_with_the_vault_behind_pgbouncer_in_session_mode() {
    run(Fleet {
        pool_mode: PoolMode::Session,
        pool_size: INSTANCES,
        prepared_statements: true,
        vault: true,
    })
    .await;
}

/// The misconfiguration the setting exists for: prepared statements behind a pooler in
/// transaction mode. After PgBouncer moves the function to another server connection, the
/// statement it prepared is not there; the error must say what to change.
#[tokio::test]
async fn prepared_statements_behind_a_transaction_pooler_fail_naming_the_setting() {
    capture_logs();
    let db = TestDb::new().await;
    let bouncer = PgBouncer::start(PoolMode::Transaction, 2);
    let config = login_etl::store::DatabaseConfig::from_url(&bouncer.url_for(&db)).unwrap();
    let processor = processor_on(config).await;
    // Closes the server connections the function prepared on, as PgBouncer does whenever a
    // server connection ages out or the pool shrinks.
    connect(&bouncer.admin_url())
        .await
        .simple_query("RECONNECT")
        .await
        .unwrap();
    let error = processor
        .process(&good_batch("pooled", 0..3), in_seconds(10))
        .await
        .expect_err("the prepared statement is gone")
        .to_string();
    assert!(
        error.contains("SQLSTATE 26000") && error.contains("set PREPARED_STATEMENTS=false"),
        "{error}"
    );
}

/// Lambda Managed Instances: one process serves `AWS_LAMBDA_MAX_CONCURRENCY` invocations at
/// once, each on a connection of its own, and never opens more connections than that.
#[tokio::test]
async fn one_environment_serves_invocations_at_once_on_at_most_one_connection_each() {
    const CONCURRENCY: usize = 4;
    let db = TestDb::new().await;
    let emulator = warm_managed_instance(&db, CONCURRENCY).await;
    // With the table locked, the invocations pile up: each must be writing, on its own
    // connection, at the same time.
    let blocker = db.lock_the_table().await;
    let mut invocations = Vec::new();
    for i in 0..CONCURRENCY * 2 {
        let event = json!({ "Records": good_batch(&format!("managed-{i}"), 0..5) });
        let url = emulator.url();
        invocations.push(tokio::spawn(
            async move { invoke_over_http(&url, &event).await },
        ));
    }
    let waiting = wait_for_backends(&db, CONCURRENCY, "wait_event_type = 'Lock'").await;
    assert_eq!(waiting, CONCURRENCY, "invocations writing at once");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        backends(&db, "true").await,
        CONCURRENCY + 1,
        "the function's connections and the blocker's: no more than one per concurrent invocation"
    );
    blocker.batch_execute("COMMIT").await.unwrap();
    for invocation in invocations {
        assert_eq!(
            invocation.await.unwrap(),
            json!({ "batchItemFailures": [] })
        );
    }
    assert_eq!(emulator.function_processes().len(), 1, "one process");
    let rows: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM user_logins", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1 + (CONCURRENCY * 2 * 5) as i64);
}

/// How many other sessions on `db` match `condition` (SQL on pg_stat_activity).
async fn backends(db: &TestDb, condition: &str) -> usize {
    let client = db.client().await;
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND ({condition})"
    );
    let count: i64 = client.query_one(&sql, &[&db.name]).await.unwrap().get(0);
    count as usize
}

/// Waits up to 10 s until `count` sessions on `db` match `condition`; returns the last count.
async fn wait_for_backends(db: &TestDb, count: usize, condition: &str) -> usize {
    let mut seen = 0;
    for _ in 0..100 {
        seen = backends(db, condition).await;
        if seen == count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

/// Lambda sends SIGTERM before it ends an environment; the network may never tell the server
/// the connection is gone (the proxy here keeps the server's side open, as a vanished host
/// would). The function closes its connection on SIGTERM, so no backend is left behind.
#[tokio::test]
async fn sigterm_closes_the_connection_so_the_server_keeps_no_backend() {
    let (db, emulator, _proxy) = environment_behind_a_silent_network().await;
    for pid in emulator.function_processes() {
        signal(pid, "TERM");
    }
    assert_eq!(
        wait_for_backends(&db, 0, "true").await,
        0,
        "the backend ended: {}",
        tail(&emulator.log())
    );
    assert!(emulator.log().contains("database connections closed"));
}

/// The other side of the test above, so that it can fail: a process killed without its
/// shutdown hook leaves its backend on the server.
#[tokio::test]
async fn without_the_hook_a_vanished_environment_leaves_its_backend() {
    let (db, emulator, _proxy) = environment_behind_a_silent_network().await;
    for pid in emulator.function_processes() {
        signal(pid, "KILL");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(backends(&db, "true").await, 1);
}

/// A warm environment whose one connection goes through a proxy that never forwards a close.
async fn environment_behind_a_silent_network() -> (TestDb, Emulator, Proxy) {
    let db = TestDb::new().await;
    let proxy = Proxy::start_holding_server_side(server_port()).await;
    let url = proxy.url_for(&db);
    let emulator = Emulator::start(&[("DATABASE_URL", url.as_str()), ("MASKING_KEY", KEY)]);
    let event = json!({ "Records": good_batch("warm", 0..1) });
    assert_eq!(
        emulator.invoke_over_http(&event).await,
        json!({ "batchItemFailures": [] })
    );
    assert_eq!(
        backends(&db, "true").await,
        1,
        "the environment's connection"
    );
    assert_eq!(emulator.function_processes().len(), 1);
    (db, emulator, proxy)
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// What AWS documents as pinning an RDS Proxy session to one database connection, for
/// PostgreSQL, as it appears in the server's statement log (lower case).
const PINNING: &[&str] = &[
    "set ",
    "set_config",
    "prepare ",
    "deallocate",
    "discard",
    "listen",
    "load ",
    "nextval",
    "setval",
    "advisory",
    "temp",
    "declare ",
];

/// Behind RDS Proxy the function runs with PREPARED_STATEMENTS=false: then nothing it sends in
/// normal operation (cold start, small and large batches, duplicates, shutdown) is on AWS's list
/// of what pins a session. The server's statement log (`log_statement = all`) shows every
/// statement, named or not; with prepared statements it shows the named ones, which pin.
#[tokio::test]
async fn with_unnamed_statements_nothing_that_pins_an_rds_proxy_session_is_sent() {
    let server = PrivateServer::start("-c log_statement=all");
    let admin = connect(&server.url).await;
    for sql in login_etl::store::MIGRATIONS {
        admin.batch_execute(sql).await.unwrap();
    }
    drop(admin);
    let unnamed = statements_sent(&server, "false");
    let executed: Vec<&String> = unnamed
        .iter()
        .filter(|s| s.starts_with("execute <unnamed>:") && s.contains("insert into user_logins"))
        .collect();
    assert!(
        executed.len() >= 3,
        "the log shows the inserts: {unnamed:#?}"
    );
    for statement in &unnamed {
        assert!(
            !statement.starts_with("execute ") || statement.starts_with("execute <unnamed>"),
            "a named prepared statement: {statement}"
        );
        // The deadline is set inside a function, out of the proxy's sight, and only for the
        // transaction: `begin; select login_etl_write_deadline(...)`.
        let text = statement.replace("login_etl_write_deadline", "");
        for pin in PINNING {
            assert!(!text.contains(pin), "{pin:?} pins a session: {statement}");
        }
    }
    let prepared = statements_sent(&server, "true");
    assert!(
        prepared
            .iter()
            .any(|s| s.starts_with("execute s") && s.contains("insert into user_logins")),
        "with prepared statements the log shows named ones: {prepared:#?}"
    );
}

/// Runs the real binary on `server` with PREPARED_STATEMENTS=`prepared`: a cold start, a batch
/// of 10, a batch of 150, the same batch again, and SIGTERM. Returns the statements the server
/// logged meanwhile, in lower case.
fn statements_sent(server: &PrivateServer, prepared: &str) -> Vec<String> {
    let log_path = format!("{}/server.log", server.dir);
    let start = std::fs::metadata(&log_path).unwrap().len() as usize;
    let emulator = Emulator::start(&[
        ("DATABASE_URL", server.url.as_str()),
        ("MASKING_KEY", KEY),
        ("PREPARED_STATEMENTS", prepared),
    ]);
    let prefix = format!("pin-{prepared}");
    for batch in [
        good_batch(&format!("{prefix}-a"), 0..10),
        good_batch(&format!("{prefix}-b"), 0..150),
        good_batch(&format!("{prefix}-b"), 0..150),
    ] {
        let answer = emulator.invoke(&json!({ "Records": batch }));
        assert_eq!(answer, json!({ "batchItemFailures": [] }));
    }
    for pid in emulator.function_processes() {
        signal(pid, "TERM");
    }
    std::thread::sleep(Duration::from_millis(500));
    let log = std::fs::read_to_string(&log_path).unwrap();
    // A statement's text goes on after its line when it spans several; other lines start with
    // the server's line prefix and a level (LOG, DETAIL, ...).
    let mut statements: Vec<String> = Vec::new();
    let mut in_statement = false;
    for line in log[start..].lines() {
        let logged = line
            .split_once("LOG:  statement: ")
            .map(|(_, statement)| statement.to_owned())
            .or_else(|| {
                line.split_once("LOG:  execute ")
                    .map(|(_, rest)| format!("execute {rest}"))
            });
        if let Some(statement) = logged {
            statements.push(statement.to_lowercase());
            in_statement = true;
        } else if in_statement && !line.contains(":  ") {
            let last = statements.last_mut().unwrap();
            last.push('\n');
            last.push_str(&line.to_lowercase());
        } else {
            in_statement = false;
        }
    }
    statements
}

/// Issue 22, 1: eight environments behind PgBouncer in transaction mode (PREPARED_STATEMENTS=false,
/// 3 server connections) reach the invocation deadline at once, with the table locked, round after
/// round: three writes end on the server's statement_timeout, five still queue in PgBouncer. A
/// client-side cancel request written and cut short crashed PgBouncer 1.18 (`disconnect_client():
/// bad client state`) in 2 of 5 such runs; a deadline must cost only the rows it reports, so
/// PgBouncer must still run and serve, and the redelivered messages must be stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn environments_reaching_the_deadline_at_once_leave_pgbouncer_serving() {
    const ROUNDS: usize = 12;
    let db = TestDb::new().await;
    let mut bouncer = PgBouncer::start(PoolMode::Transaction, 3);
    let config = login_etl::store::DatabaseConfig::from_url(&bouncer.url_for(&db)).unwrap();
    let mut environments = Vec::new();
    for _ in 0..INSTANCES {
        let masker = login_etl_core::mask::Masker::new(KEY.as_bytes()).unwrap();
        let processor = processor_with(
            config.clone(),
            masker,
            login_etl::store::StatementMode::Unnamed,
        )
        .await;
        environments.push(std::sync::Arc::new(processor));
    }
    let batch =
        |round: usize, instance: usize| good_batch(&format!("late-{round}-{instance}"), 0..5);
    for round in 0..ROUNDS {
        let blocker = db.lock_the_table().await;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(800);
        let mut invocations = Vec::new();
        for (instance, processor) in environments.iter().enumerate() {
            let processor = std::sync::Arc::clone(processor);
            invocations.push(tokio::spawn(async move {
                processor.process(&batch(round, instance), deadline).await
            }));
        }
        for invocation in invocations {
            let outcome = invocation.await.unwrap().unwrap_or_else(|e| {
                panic!(
                    "round {round}: a whole batch failed (PgBouncer running: {}): {e}\n{}",
                    bouncer.is_running(),
                    tail(&bouncer.log())
                )
            });
            assert_eq!(failed_ids(&outcome).len(), 5, "round {round}");
            assert!(
                outcome
                    .failures
                    .iter()
                    .all(|f| f.reason == login_etl_core::failure::Reason::NotConfirmed),
                "round {round}: {:?}",
                outcome.failures
            );
        }
        blocker.batch_execute("COMMIT").await.unwrap();
        assert!(
            bouncer.is_running(),
            "PgBouncer died in round {round}: {}",
            tail(&bouncer.log())
        );
    }
    // Every client of the pooler, new or not, is served; the redeliveries are stored.
    let other = connect(&bouncer.url_for(&db)).await;
    other.simple_query("SELECT 1").await.unwrap();
    for (instance, processor) in environments.iter().enumerate() {
        let retry = processor
            .process(&batch(0, instance), in_seconds(30))
            .await
            .unwrap();
        // A write PgBouncer handed to the server just before its client gave up may have
        // committed once the lock went: reported failed, it comes back as a duplicate.
        assert!(
            retry.failures.is_empty(),
            "environment {instance}: {:?}",
            retry.failures
        );
        assert_eq!(retry.stored + retry.duplicates, 5, "environment {instance}");
    }
    assert!(bouncer.is_running(), "{}", tail(&bouncer.log()));
}

/// Issue 22, 2: Lambda Managed Instances end an environment with SIGTERM while it serves
/// invocations; the process used to exit at once with none answered, leaving their backends to
/// commit later. Four invocations are in flight, two by the INSERT (10 records) and two by the
/// COPY (150), all waiting for a lock, when SIGTERM comes. With the lock released 50 ms later
/// they answer within the drain and their rows are stored; held past it, they give up and answer
/// with an error (their batches come back whole), their backends end with the lock still held,
/// and nothing is committed after the process is gone. Either way the process is gone well
/// within the time Lambda allows (docs/reliability.md, "Shutdown").
async fn sigterm_with_invocations_in_flight(release_after: Option<Duration>) {
    const SIZES: [usize; 4] = [10, 150, 10, 150];
    let db = TestDb::new().await;
    let emulator = warm_managed_instance(&db, SIZES.len()).await;
    let blocker = db.lock_the_table().await;
    let mut invocations = Vec::new();
    for (i, size) in SIZES.into_iter().enumerate() {
        let event = json!({ "Records": good_batch(&format!("in-flight-{i}"), 0..size) });
        let url = emulator.url();
        invocations.push(tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(30), invoke_over_http(&url, &event)).await
        }));
    }
    assert_eq!(
        wait_for_backends(&db, SIZES.len(), "wait_event_type = 'Lock'").await,
        SIZES.len(),
        "every invocation is writing: {}",
        tail(&emulator.log())
    );
    let pids = emulator.function_processes();
    assert_eq!(pids.len(), 1);
    signal(pids[0], "TERM");
    let sigterm = std::time::Instant::now();
    if let Some(pause) = release_after {
        tokio::time::sleep(pause).await;
        blocker.batch_execute("COMMIT").await.unwrap();
    }
    let mut answers = Vec::new();
    for invocation in invocations {
        let answer = invocation.await.unwrap().unwrap_or_else(|_| {
            panic!(
                "an invocation was never answered: {}",
                tail(&emulator.log())
            )
        });
        answers.push(answer);
    }
    while !emulator.function_processes().is_empty() {
        assert!(
            sigterm.elapsed() < Duration::from_secs(3),
            "the process still runs: {}",
            tail(&emulator.log())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = emulator.log();
    let shut_down = log
        .lines()
        .find(|line| line.contains("shut down on SIGTERM"))
        .unwrap_or_else(|| panic!("{}", tail(&log)));
    let shutdown_ms: u64 = shut_down
        .split("shutdown_ms=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("{shut_down}"));
    assert!(shutdown_ms < 500, "{shut_down}");
    if release_after.is_some() {
        for answer in &answers {
            assert_eq!(answer, &json!({ "batchItemFailures": [] }));
        }
        assert_eq!(db.count().await, 1 + SIZES.iter().sum::<usize>() as i64);
    } else {
        for answer in &answers {
            assert!(answer.to_string().contains("shutting down"), "{answer}");
        }
        // The server ends the abandoned writes although the lock is still held.
        let left = wait_for_backends(&db, 0, "wait_event_type = 'Lock'").await;
        let waiting = db
            .client()
            .await
            .query(
                "SELECT left(query, 60), backend_start::text, state FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap();
        let waiting: Vec<(String, String, String)> = waiting
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        assert_eq!(left, 0, "{waiting:?}");
        blocker.batch_execute("COMMIT").await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            db.count().await,
            1,
            "nothing committed after the process was gone"
        );
    }
    drop(blocker);
    assert_eq!(
        wait_for_backends(&db, 0, "true").await,
        0,
        "no backend left"
    );
}

#[tokio::test]
async fn sigterm_lets_invocations_in_flight_on_both_write_paths_answer() {
    sigterm_with_invocations_in_flight(Some(Duration::from_millis(50))).await;
}

#[tokio::test]
async fn sigterm_makes_invocations_held_past_the_drain_give_up_and_leaves_nothing_to_commit() {
    sigterm_with_invocations_in_flight(None).await;
}

/// Issue 22, 8: the server behind PgBouncer went away. Once a server login failed, PgBouncer
/// refuses its clients for `server_login_retry` with SQLSTATE 08P01 and a message saying so; the
/// function's error used to keep only `database unavailable: SQLSTATE 08P01`. It keeps the
/// message (connection errors quote no row), at a cold start and in a warm environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_pgbouncer_a_failing_server_login_is_named_in_the_error() {
    const RETRY: &str = "server login has been failing, try again later (server_login_retry)";
    let server = PrivateServer::start("");
    let admin = connect(&server.url).await;
    for sql in login_etl::store::MIGRATIONS {
        admin.batch_execute(sql).await.unwrap();
    }
    drop(admin);
    let bouncer = PgBouncer::start_in_front_of(server.port, PoolMode::Transaction, 2);
    let through = server.url.replace(
        &format!(":{}/", server.port),
        &format!(":{}/", bouncer.port),
    );
    let config = || login_etl::store::DatabaseConfig::from_url(&through).unwrap();
    let warm = processor_with(
        config(),
        login_etl_core::mask::Masker::new(KEY.as_bytes()).unwrap(),
        login_etl::store::StatementMode::Unnamed,
    )
    .await;
    server.pg_ctl(&["stop", "-m", "fast"]);
    // A first client meets the failed server login (and then waits in PgBouncer's queue).
    let first = connect(&through).await;
    let waiting = tokio::spawn(async move { first.simple_query("SELECT 1").await.is_ok() });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let options = login_etl::store::StoreOptions {
        statement_mode: login_etl::store::StatementMode::Unnamed,
        ..Default::default()
    };
    let cold = login_etl::store::Store::connect(config(), options, in_seconds(10))
        .await
        .err()
        .expect("no server to connect to")
        .to_string();
    assert!(cold.contains(RETRY), "{cold}");
    let error = warm
        .process(&good_batch("no-server", 0..3), in_seconds(10))
        .await
        .expect_err("no server to write to")
        .to_string();
    assert!(error.contains(RETRY), "{error}");
    waiting.abort();
}

/// One environment of the real binary serving `concurrency` invocations at once, as Lambda
/// Managed Instances run it, started by a first invocation (the process and its first
/// connection).
async fn warm_managed_instance(db: &TestDb, concurrency: usize) -> Emulator {
    let environments = Environments {
        instances: 1,
        max_concurrency: concurrency,
        ..Environments::default()
    };
    let emulator = Emulator::start_with(
        &[("DATABASE_URL", db.url.as_str()), ("MASKING_KEY", KEY)],
        environments,
    );
    let warm = json!({ "Records": good_batch("warm", 0..1) });
    assert_eq!(
        emulator.invoke_over_http(&warm).await,
        json!({ "batchItemFailures": [] })
    );
    emulator
}
