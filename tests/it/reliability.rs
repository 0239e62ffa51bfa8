//! Faults and limits against real PostgreSQL servers: restarts between and during invocations,
//! a statement that outlives the deadline, a 10,000-record batch, and a least-privilege role.

use std::time::Duration;

use crate::common::*;
use login_etl::store::DatabaseConfig;
use login_etl::store::StatementMode;
use login_etl_core::failure::Reason;
use serde_json::json;
use tokio::time::Instant;

/// A migrated database on a private server, so the test may restart that server.
async fn private_db(server: &PrivateServer) -> (String, tokio_postgres::Client) {
    let client = connect(&server.url).await;
    for sql in login_etl::store::MIGRATIONS {
        client.batch_execute(sql).await.unwrap();
    }
    (server.url.clone(), client)
}

async fn count(url: &str) -> i64 {
    connect(url)
        .await
        .query_one("SELECT count(*) FROM user_logins", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn the_function_recovers_from_a_restart_between_invocations() {
    capture_logs();
    let server = PrivateServer::start("");
    let (url, _) = private_db(&server).await;
    let processor = processor_on(DatabaseConfig::from_url(&url).unwrap()).await;
    assert_eq!(
        processor
            .process(&good_batch("before", 0..10), in_seconds(10))
            .await
            .unwrap()
            .stored,
        10
    );

    server.pg_ctl(&["restart", "-m", "fast"]);

    // Same processor, same execution environment: no cold start, one reconnect.
    let outcome = processor
        .process(&good_batch("after", 0..10), in_seconds(10))
        .await
        .unwrap();
    assert_eq!((outcome.stored, outcome.failures.len()), (10, 0));
    assert_eq!(count(&url).await, 20);
}

#[tokio::test]
async fn a_restart_during_an_invocation_loses_and_duplicates_nothing() {
    capture_logs();
    let server = PrivateServer::durable();
    let (url, blocker) = private_db(&server).await;
    let processor = processor_on(DatabaseConfig::from_url(&url).unwrap()).await;
    let records = good_batch("during", 0..200);

    // Hold a lock so the insert is in flight on the server when it goes down.
    blocker
        .batch_execute("BEGIN; LOCK TABLE user_logins IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let invocation = processor.process(&records, in_seconds(20));
    let restart = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::task::spawn_blocking({
            let (bin, dir) = (server.bin.clone(), server.dir.clone());
            move || restart_immediately(&bin, &dir)
        })
        .await
        .unwrap();
    };
    let (result, ()) = tokio::join!(invocation, restart);

    // Either the reconnect found the server back and stored the batch, or the handler failed
    // the whole batch for a retry. Never a partial success.
    match result {
        Ok(outcome) => assert_eq!((outcome.stored, outcome.failures.len()), (200, 0)),
        Err(error) => {
            assert!(error.to_string().contains("retried"), "{error}");
            let retry = processor.process(&records, in_seconds(20)).await.unwrap();
            assert_eq!(retry.stored + retry.duplicates, 200);
        }
    }
    assert_eq!(count(&url).await, 200, "every message exactly once");
}

fn restart_immediately(bin: &str, dir: &str) {
    let server = PrivateServer {
        dir: dir.into(),
        bin: bin.into(),
        port: 0,
        url: String::new(),
    };
    server.pg_ctl(&["restart", "-m", "immediate"]);
    std::mem::forget(server); // the test's own handle stops the cluster
}

#[tokio::test]
async fn a_statement_past_the_deadline_is_cancelled_and_reported_not_stored() {
    a_lock_held_past_the_deadline(5, StatementMode::Prepared).await;
}

/// Without prepared statements (behind a pooler) the deadline holds the same, small batch or
/// large (which then goes by INSERT too).
#[tokio::test]
async fn with_unnamed_statements_a_write_past_the_deadline_is_reported_not_stored() {
    a_lock_held_past_the_deadline(5, StatementMode::Unnamed).await;
    a_lock_held_past_the_deadline(150, StatementMode::Unnamed).await;
}

/// A large batch goes by COPY: past the deadline it must answer as the INSERT does, message by
/// message.
#[tokio::test]
async fn a_first_large_batch_past_the_deadline_is_reported_like_any_other() {
    a_lock_held_past_the_deadline(150, StatementMode::Prepared).await;
}

/// After a deadline the connection is dropped; the next invocation reconnects, and preparing the
/// statements waits for the lock too. A connection that could not be made ready in time is
/// reported message by message, as a write that did not finish is, not as an outage.
#[tokio::test]
async fn a_reconnect_that_waits_past_the_deadline_is_reported_message_by_message() {
    let (db, processor) = TestDb::with_processor().await;
    let blocker = db.lock_the_table().await;
    for round in ["late", "later"] {
        let deadline = Instant::now() + Duration::from_millis(800);
        let outcome = processor
            .process(&good_batch(round, 0..5), deadline)
            .await
            .unwrap_or_else(|e| panic!("{round}: the whole batch failed: {e}"));
        assert_eq!(failed_ids(&outcome).len(), 5, "{round}");
        assert!(
            outcome
                .failures
                .iter()
                .all(|f| f.reason == Reason::NotConfirmed),
            "{round}: {:?}",
            outcome.failures
        );
    }
    blocker.batch_execute("COMMIT").await.unwrap();
    assert_eq!(db.count().await, 0);
}

/// A DBA holds a lock on the table past the invocation deadline; `size` messages arrive.
async fn a_lock_held_past_the_deadline(size: usize, mode: StatementMode) {
    let (db, processor) = TestDb::with_processor_sending(mode).await;
    let blocker = db.lock_the_table().await;

    let deadline = Instant::now() + Duration::from_millis(800);
    let outcome = processor
        .process(&good_batch("late", 0..size), deadline)
        .await
        .unwrap();
    assert_eq!(failed_ids(&outcome).len(), size);
    assert!(
        outcome
            .failures
            .iter()
            .all(|f| f.reason == Reason::NotConfirmed),
        "{:?}",
        outcome.failures
    );
    assert_eq!(outcome.stored, 0);

    blocker.batch_execute("COMMIT").await.unwrap();
    // The cancelled statement must not commit behind our back once the lock is gone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(db.count().await, 0);
    // The redelivery succeeds on a fresh connection.
    let retry = processor
        .process(&good_batch("late", 0..size), in_seconds(10))
        .await
        .unwrap();
    assert_eq!(retry.stored, size);
}

#[tokio::test]
async fn a_statement_cancelled_by_an_administrator_is_reported_as_cancelled() {
    let (db, processor) = TestDb::with_processor().await;
    let blocker = db.lock_the_table().await;
    let admin = db.client().await;
    // Once the function's insert waits for the lock, cancel it, as a DBA would.
    let cancel = async {
        for _ in 0..250 {
            let cancelled: i64 = admin
                .query_one(
                    "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if cancelled > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the function's insert never waited for the lock");
    };
    let records = good_batch("dba", 0..5);
    let (outcome, ()) = tokio::join!(processor.process(&records, in_seconds(30)), cancel);
    let outcome = outcome.unwrap();
    assert_eq!(failed_ids(&outcome).len(), 5);
    assert!(
        outcome
            .failures
            .iter()
            .all(|f| f.reason == Reason::Cancelled),
        "{:?}",
        outcome.failures
    );
    blocker.batch_execute("COMMIT").await.unwrap();
    let retry = processor.process(&records, in_seconds(10)).await.unwrap();
    assert_eq!(retry.stored, 5);
}

/// An RDS Multi-AZ or Aurora fail-over, with two real servers: the primary the function is
/// connected to becomes read-only mid-stream (SQLSTATE 25006 on its next write), and libpq's
/// multi-host URL with `target_session_attrs=read-write` leads the reconnect to the new one.
#[tokio::test]
async fn after_a_fail_over_the_function_writes_to_the_new_primary() {
    capture_logs();
    let (old, new) = (PrivateServer::start(""), PrivateServer::start(""));
    let (old_url, old_admin) = private_db(&old).await;
    let (new_url, _) = private_db(&new).await;
    let both = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/login_etl?sslmode=disable&target_session_attrs=read-write",
        old.port, new.port
    );
    let processor = processor_on(DatabaseConfig::from_url(&both).unwrap()).await;
    let stream: Vec<_> = [("before", 150), ("during", 150), ("after", 10)]
        .iter()
        .map(|(prefix, size)| good_batch(prefix, 0..*size))
        .collect();

    let first = processor.process(&stream[0], in_seconds(10)).await.unwrap();
    assert_eq!(first.stored, 150);

    // The old primary is demoted: every session's next transaction is read-only.
    for demote in [
        "ALTER SYSTEM SET default_transaction_read_only = on",
        "SELECT pg_reload_conf()",
    ] {
        old_admin.batch_execute(demote).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    for batch in &stream[1..] {
        let outcome = processor.process(batch, in_seconds(10)).await.unwrap();
        assert_eq!(
            (outcome.stored, outcome.failures.len()),
            (batch.len(), 0),
            "{:?}",
            outcome.failures.first()
        );
    }
    let ids_on = |url: String| async move {
        let rows = connect(&url)
            .await
            .query("SELECT message_id FROM user_logins ORDER BY 1", &[])
            .await
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect::<Vec<String>>()
    };
    let ids_of = |batches: &[Vec<aws_lambda_events::event::sqs::SqsMessage>]| {
        let mut ids: Vec<String> = batches
            .iter()
            .flatten()
            .map(|r| r.message_id.clone().unwrap())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids_on(old_url).await, ids_of(&stream[..1]));
    assert_eq!(ids_on(new_url).await, ids_of(&stream[1..]));
}

#[tokio::test]
async fn a_deadline_already_passed_stores_nothing_and_reports_everything() {
    let (db, processor) = TestDb::with_processor().await;
    let outcome = processor
        .process(&good_batch("gone", 0..3), Instant::now())
        .await
        .unwrap();
    assert_eq!(
        failed_ids(&outcome),
        ["gone-00000", "gone-00001", "gone-00002"]
    );
    assert_eq!(db.count().await, 0);
}

#[tokio::test]
async fn a_batch_of_ten_thousand_records_with_bad_rows_scattered() {
    let db = TestDb::new().await;
    db.refuse_banned_user().await;
    let processor = db.processor().await;
    let banned = body_with("user_id", Some(json!("banned")));
    let mut records = good_batch("big", 0..10_000);
    for i in [17, 4_321, 9_999] {
        records[i] = sqs_record(&format!("big-{i:05}"), &banned);
    }
    records[5_000] = sqs_record("big-05000", "not json");
    let outcome = processor.process(&records, in_seconds(60)).await.unwrap();
    let mut failed = failed_ids(&outcome);
    failed.sort();
    assert_eq!(failed, ["big-00017", "big-04321", "big-05000", "big-09999"]);
    assert_eq!(outcome.stored, 9_996);
    assert_eq!(db.count().await, 9_996);
}

/// The function role's grants exactly as docs/privacy.md lists them (its `login_etl_writer` lines),
/// for `role`; the vault's only `with_vault`.
fn documented_writer_grants(role: &str, with_vault: bool) -> String {
    let privacy =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/privacy.md")).unwrap();
    let grants: Vec<String> = privacy
        .lines()
        .filter(|line| line.starts_with("GRANT ") && line.contains("TO login_etl_writer;"))
        .filter(|line| with_vault || !line.contains("pii_vault"))
        .map(|line| line.replace("login_etl_writer", role))
        .collect();
    assert!(
        !grants.is_empty(),
        "docs/privacy.md lists the writer's grants"
    );
    grants.join("\n")
}

/// A role of its own on `db` with only the documented grants; returns its URL.
async fn least_privileged_url(db: &TestDb, role: &str, with_vault: bool) -> String {
    db.client()
        .await
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN;
             REVOKE ALL ON SCHEMA public FROM PUBLIC;
             GRANT USAGE ON SCHEMA public TO {role};
             {}",
            documented_writer_grants(role, with_vault)
        ))
        .await
        .unwrap();
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    assert_ne!(url, db.url, "the test URL names the postgres user");
    url
}

async fn drop_role(db: TestDb, role: &str) {
    db.client()
        .await
        .batch_execute(&format!("DROP OWNED BY {role}; "))
        .await
        .unwrap();
    drop(db);
    connect(&admin_url())
        .await
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .unwrap();
}

async fn refused(client: &tokio_postgres::Client, sql: &str) {
    let error = client.batch_execute(sql).await.unwrap_err();
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "{sql}"
    );
}

#[tokio::test]
async fn the_function_needs_only_the_grants_privacy_md_lists() {
    let db = TestDb::new().await;
    let role = format!("writer_{}", db.name);
    let url = least_privileged_url(&db, &role, false).await;
    let processor = processor_on(DatabaseConfig::from_url(&url).unwrap()).await;
    let outcome = processor
        .process(&good_batch("least", 0..5), in_seconds(10))
        .await
        .unwrap();
    assert_eq!(outcome.stored, 5);
    // Redelivery (ON CONFLICT DO NOTHING) works with the same grants, and so does a message
    // without SentTimestamp (its date is claimed in user_logins_fallback_dates).
    let mut batch = good_batch("least", 0..5);
    let mut undated = sqs_record("undated", GOOD_BODY);
    undated.attributes.remove("SentTimestamp");
    batch.push(undated);
    let again = processor.process(&batch, in_seconds(10)).await.unwrap();
    assert_eq!((again.stored, again.duplicates), (1, 5));
    // And the role can do nothing more.
    let writer = connect(&url).await;
    for forbidden in [
        "DELETE FROM user_logins",
        "UPDATE user_logins SET locale = 'x'",
        "CREATE TABLE t(x int)",
        "SELECT FROM pii_vault",
    ] {
        refused(&writer, forbidden).await;
    }
    drop(writer);
    drop_role(db, &role).await;
}

#[tokio::test]
async fn with_the_vault_the_function_needs_only_the_grants_privacy_md_lists() {
    let db = TestDb::new().await;
    let role = format!("sealer_{}", db.name);
    let url = least_privileged_url(&db, &role, true).await;
    let recovery = login_etl_core::vault::RecoveryKey::from_hex("r1", &"42".repeat(64)).unwrap();
    let masker = login_etl_core::mask::Masker::new(KEY.as_bytes())
        .unwrap()
        .with_recovery(recovery);
    let processor = processor_masking_with(DatabaseConfig::from_url(&url).unwrap(), masker).await;
    // The same ip and device id on two days: the second keeps the vault entries' last_seen up.
    let on_day = |id: &str, millis: &str| {
        let mut record = sqs_record(id, GOOD_BODY);
        record
            .attributes
            .insert("SentTimestamp".into(), millis.into());
        record
    };
    for (id, millis) in [("monday", "1763942400000"), ("tuesday", "1764028800000")] {
        let outcome = processor
            .process(&[on_day(id, millis)], in_seconds(10))
            .await
            .unwrap();
        assert_eq!(outcome.stored, 1, "{id}");
    }
    let last_seen: Vec<time::Date> = db
        .client()
        .await
        .query("SELECT DISTINCT last_seen FROM pii_vault", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(last_seen, [time::macros::date!(2025 - 11 - 25)]);
    // The role may keep last_seen up, not read what is sealed.
    let writer = connect(&url).await;
    for forbidden in [
        "SELECT ciphertext FROM pii_vault",
        "DELETE FROM pii_vault",
        "UPDATE pii_vault SET key_id = 'x'",
    ] {
        refused(&writer, forbidden).await;
    }
    drop(writer);
    drop_role(db, &role).await;
}
