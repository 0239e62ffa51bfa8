//! user_logins partitioned by day (migration 005) against a real PostgreSQL: the upgrade of a
//! table with rows, both write paths across UTC midnight and into the default partition,
//! idempotency without SentTimestamp, retention and deletion requests.

use crate::common::*;
use aws_lambda_events::event::sqs::SqsMessage;
use login_etl::store::{Store, StoreOptions, MIGRATIONS};
use login_etl_core::batch::plan_batch;
use login_etl_core::mask::Masker;
use login_etl_core::vault::RecoveryKey;
use serde_json::json;
use time::macros::date;
use time::{Date, Duration, OffsetDateTime};

/// Comfortably above the size from which the store uses COPY.
const LARGE: usize = 150;
const OLD_KEY: &str = "the-masking-key-before-the-rotation-0123456789abcdef";

/// Milliseconds since 1970 of `day` at `hh:mm:ss.mmm` UTC.
fn sent_at(day: Date, time: time::Time) -> String {
    (day.with_time(time).assume_utc().unix_timestamp_nanos() / 1_000_000).to_string()
}

fn sent_on(mut record: SqsMessage, millis: &str) -> SqsMessage {
    record
        .attributes
        .insert("SentTimestamp".into(), millis.to_owned());
    record
}

fn login(user_id: &str, ip: &str, device_id: &str) -> String {
    let mut body: serde_json::Value = serde_json::from_str(GOOD_BODY).unwrap();
    body["user_id"] = json!(user_id);
    body["ip"] = json!(ip);
    body["device_id"] = json!(device_id);
    body.to_string()
}

fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

/// How many rows each partition holds, by partition name.
async fn rows_per_partition(db: &TestDb) -> Vec<(String, i64)> {
    db.pairs("SELECT tableoid::regclass::text, count(*) FROM user_logins GROUP BY 1 ORDER BY 1")
        .await
}

async fn partition_exists(db: &TestDb, day: Date) -> bool {
    db.client()
        .await
        .query_one(
            "SELECT to_regclass(login_etl_partition_name($1)) IS NOT NULL",
            &[&day],
        )
        .await
        .unwrap()
        .get(0)
}

/// A database with the schema as it was before migration 005 (migrations 001 to 004).
async fn before_partitions() -> TestDb {
    let db = TestDb::empty().await;
    let client = db.client().await;
    for sql in &MIGRATIONS[..4] {
        client.batch_execute(sql).await.unwrap();
    }
    db
}

#[tokio::test]
async fn an_unpartitioned_table_with_rows_upgrades_in_place_and_keeps_its_grants() {
    // The project before migration 005, with rows of three days, one without a date (the
    // take-home table allowed that), a vault entry and an analyst's grant.
    let db = before_partitions().await;
    let client = db.client().await;
    let analyst = format!("analyst_{}", db.name);
    client
        .batch_execute(&format!(
            "INSERT INTO user_logins (user_id, masked_ip, masked_device_id, create_date, message_id)
             VALUES ('u1', 'ip-a', 'dev-1', '2026-01-01', 'm1'), ('u2', 'ip-a', 'dev-2', '2026-03-05', 'm2'),
                    ('u3', 'ip-b', 'dev-3', NULL, 'm3'), ('u4', 'ip-c', 'dev-4', '2026-03-05', 'm4');
             INSERT INTO pii_vault (masked_value, kind, key_id, ciphertext, created_at)
             VALUES ('ip-a', 'ip', 'r1', '\\x00', '2025-12-01'), ('ip-z', 'ip', 'r1', '\\x00', '2025-12-01');
             CREATE ROLE {analyst};
             GRANT SELECT ON user_logins, user_logins_readable TO {analyst};"
        ))
        .await
        .unwrap();

    // Applied twice, as every migration must allow.
    for _ in 0..2 {
        for sql in MIGRATIONS {
            client.batch_execute(sql).await.expect("migration applies");
        }
    }

    assert_eq!(
        rows_per_partition(&db).await,
        [
            ("user_logins_default".to_string(), 1),
            ("user_logins_p20260101".to_string(), 1),
            ("user_logins_p20260305".to_string(), 2),
        ]
    );
    let kept: Vec<String> = client
        .query(
            "SELECT message_id FROM user_logins_readable ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(kept, ["m1", "m2", "m3", "m4"]);
    for table in ["user_logins", "user_logins_readable"] {
        let granted: bool = client
            .query_one(
                "SELECT has_table_privilege($1, $2, 'SELECT')",
                &[&analyst, &table],
            )
            .await
            .unwrap()
            .get(0);
        assert!(granted, "{analyst} keeps SELECT on {table}");
    }
    // The vault entry is last seen on the latest day of a row using it; an entry no row uses
    // gets the day it was sealed, so retention can end both.
    let last_seen: Vec<(String, Date)> = client
        .query(
            "SELECT masked_value, last_seen FROM pii_vault ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        last_seen,
        [
            ("ip-a".to_string(), date!(2026 - 03 - 05)),
            ("ip-z".to_string(), date!(2025 - 12 - 01)),
        ]
    );
    // The partitions of today and the week ahead are ready.
    for ahead in 0..=7 {
        assert!(partition_exists(&db, today() + Duration::days(ahead)).await);
    }
    // The function writes to the upgraded table, and a message stored before the upgrade,
    // delivered again with its date, is still one row.
    let processor = db.processor().await;
    let before_upgrade = sent_on(
        sqs_record("m2", GOOD_BODY),
        &sent_at(date!(2026 - 03 - 05), time::macros::time!(12:00)),
    );
    let outcome = processor
        .process(
            &[before_upgrade, sqs_record("new", GOOD_BODY)],
            in_seconds(10),
        )
        .await
        .unwrap();
    assert_eq!((outcome.stored, outcome.duplicates), (1, 1));
    assert_eq!(db.count().await, 5);
}

#[tokio::test]
async fn both_write_paths_split_a_batch_at_utc_midnight_and_keep_days_without_a_partition() {
    let db = TestDb::new().await;
    let processor = db.processor().await;
    let client = db.client().await;
    let (evening, morning) = (date!(2026 - 06 - 30), date!(2026 - 07 - 01));
    client
        .query(
            "SELECT login_etl_create_partitions($1, $2)",
            &[&evening, &morning],
        )
        .await
        .unwrap();
    let before_midnight = sent_at(evening, time::macros::time!(23:59:59.999));
    let after_midnight = sent_at(morning, time::macros::time!(00:00:00.000));
    // 2001-01-01 has no partition: its rows wait in the default partition.
    let no_partition = sent_at(date!(2001 - 01 - 01), time::macros::time!(08:00));
    let batch = |prefix: &str, size: usize| -> Vec<SqsMessage> {
        good_batch(prefix, 0..size)
            .into_iter()
            .enumerate()
            .map(|(i, record)| match i % 3 {
                0 => sent_on(record, &before_midnight),
                1 => sent_on(record, &after_midnight),
                _ => sent_on(record, &no_partition),
            })
            .collect()
    };
    // 150 rows go by COPY, 9 by INSERT; each path is then given its batch again.
    for (prefix, size) in [("copy", LARGE), ("insert", 9)] {
        let first = processor
            .process(&batch(prefix, size), in_seconds(10))
            .await
            .unwrap();
        assert!(first.failures.is_empty(), "{:?}", first.failures);
        assert_eq!(first.stored, size);
        let again = processor
            .process(&batch(prefix, size), in_seconds(10))
            .await
            .unwrap();
        assert_eq!((again.stored, again.duplicates), (0, size), "{prefix}");
    }
    let third = (LARGE / 3 + 3) as i64;
    assert_eq!(
        rows_per_partition(&db).await,
        [
            ("user_logins_default".to_string(), third),
            ("user_logins_p20260630".to_string(), third),
            ("user_logins_p20260701".to_string(), third),
        ]
    );
    // Creating the missing day's partition moves its rows out of the default partition: none
    // lost, none twice, and redeliveries still find them.
    client
        .query(
            "SELECT login_etl_create_partitions('2001-01-01', '2001-01-01')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        rows_per_partition(&db).await,
        [
            ("user_logins_p20010101".to_string(), third),
            ("user_logins_p20260630".to_string(), third),
            ("user_logins_p20260701".to_string(), third),
        ]
    );
    let again = processor
        .process(&batch("copy", LARGE), in_seconds(10))
        .await
        .unwrap();
    assert_eq!((again.stored, again.duplicates), (0, LARGE));
}

#[tokio::test]
async fn a_message_without_sent_timestamp_is_one_row_whatever_day_it_comes_again() {
    let db = TestDb::new().await;
    let masker = Masker::new(KEY.as_bytes()).unwrap();
    let store = Store::connect(db.config(), StoreOptions::default(), in_seconds(10))
        .await
        .unwrap();
    let undated = |id: &str| {
        let mut record = sqs_record(id, GOOD_BODY);
        record.attributes.remove("SentTimestamp");
        record
    };
    // Large enough for COPY, which such rows must not take: only the INSERT claims the date.
    let mut records: Vec<SqsMessage> = good_batch("dated", 0..LARGE);
    records.push(undated("undated-1"));
    records.push(undated("undated-2"));
    let (monday, tuesday) = (date!(2026 - 11 - 23), date!(2026 - 11 - 24));
    let mut stored_on = Vec::new();
    for (day, records) in [
        (monday, &records[..]),
        (tuesday, &records[..]),
        (tuesday, &records[LARGE..]),
    ] {
        let plan = plan_batch(records, &masker, day).unwrap();
        let report = store
            .write(&plan.rows, &plan.key_ids, in_seconds(10), plan.queue)
            .await
            .unwrap();
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        stored_on.push((report.inserted, report.already_stored));
    }
    assert_eq!(
        stored_on,
        [(LARGE + 2, 0), (0, LARGE + 2), (0, 2)],
        "the redeliveries on Tuesday are found, not stored again"
    );
    let dates: Vec<(String, Date)> = db
        .client()
        .await
        .query(
            "SELECT message_id, create_date FROM user_logins WHERE message_id LIKE 'undated%'
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        dates,
        [
            ("undated-1".to_string(), monday),
            ("undated-2".to_string(), monday)
        ]
    );
    assert_eq!(db.count().await, LARGE as i64 + 2);
}

/// A processor masking with `key` and sealing into the vault (recovery key 0x42s).
async fn processor_sealing(db: &TestDb, key: &str) -> login_etl::handler::Processor {
    let recovery = RecoveryKey::from_hex("r1", &"42".repeat(64)).unwrap();
    let masker = Masker::new(key.as_bytes()).unwrap().with_recovery(recovery);
    processor_masking_with(db.config(), masker).await
}

#[tokio::test]
async fn retention_drops_old_days_and_the_vault_entries_only_they_used() {
    let db = TestDb::new().await;
    let processor = processor_sealing(&db, KEY).await;
    let now = time::macros::time!(12:00);
    let old = today() - Duration::days(40);
    let older_without_partition = today() - Duration::days(50);
    db.client()
        .await
        .query("SELECT login_etl_create_partitions($1, $1)", &[&old])
        .await
        .unwrap();
    let records = [
        // Only old rows use 10.0.0.1 and old-device.
        sent_on(
            sqs_record("a", &login("u1", "10.0.0.1", "old-device")),
            &sent_at(old, now),
        ),
        sent_on(
            sqs_record("b", &login("u1", "10.0.0.2", "older-device")),
            &sent_at(older_without_partition, now),
        ),
        // 10.0.0.3 is used by an old row and a row of today: it stays.
        sent_on(
            sqs_record("c", &login("u2", "10.0.0.3", "dev-c")),
            &sent_at(old, now),
        ),
        sent_on(
            sqs_record("d", &login("u3", "10.0.0.3", "dev-d")),
            &sent_at(today(), now),
        ),
    ];
    let outcome = processor.process(&records, in_seconds(10)).await.unwrap();
    assert_eq!(outcome.stored, 4);
    assert_eq!(db.count_of("pii_vault").await, 7);

    let (ok, stdout, stderr) = pii_tool(
        &db,
        &[],
        &["partitions", "--retain-days", "30", "--days-ahead", "2"],
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(
            "1 dropped; 1 rows past retention deleted from the default partition; 5 vault entries"
        ),
        "{stdout}"
    );
    assert_eq!(db.stored_message_ids().await, ["d"]);
    assert!(!partition_exists(&db, old).await);
    assert!(partition_exists(&db, today() + Duration::days(2)).await);
    // Left: 10.0.0.3 and dev-d, both used by the row of today.
    assert_eq!(db.count_of("pii_vault").await, 2);

    // Nothing left to do: a second run the same day changes nothing.
    let (ok, stdout, _) = pii_tool(&db, &[], &["partitions", "--retain-days", "30"]);
    assert!(ok);
    assert!(stdout.starts_with("partitions: "), "{stdout}");
    assert!(stdout.contains("0 dropped; 0 rows"), "{stdout}");
    assert_eq!(db.stored_message_ids().await, ["d"]);

    let (ok, _, stderr) = pii_tool(&db, &[], &["partitions", "--retain-days", "0"]);
    assert!(!ok);
    assert!(stderr.contains("--retain-days takes a whole number of days, at least 1"));
}

#[tokio::test]
async fn a_deletion_request_removes_the_persons_rows_and_only_their_vault_entries() {
    let db = TestDb::new().await;
    // u1 and u2 share a network (10.9.9.9); u2's rows are from before a key rotation.
    processor_sealing(&db, KEY)
        .await
        .process(
            &[
                sqs_record("u1-a", &login("u1", "10.9.9.9", "u1-phone")),
                sqs_record("u1-b", &login("u1", "10.1.1.1", "u1-phone")),
                sqs_record("u3-a", &login("u3", "10.3.3.3", "u3-phone")),
            ],
            in_seconds(10),
        )
        .await
        .unwrap();
    processor_sealing(&db, OLD_KEY)
        .await
        .process(
            &[sqs_record("u2-a", &login("u2", "10.9.9.9", "u2-phone"))],
            in_seconds(10),
        )
        .await
        .unwrap();
    assert_eq!(db.count_of("pii_vault").await, 7);

    let (ok, stdout, stderr) = pii_tool(&db, &[], &["forget", "--user-id", "u1"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with("deleted 2 rows and 3 vault entries;"),
        "{stdout}"
    );
    assert_eq!(db.stored_message_ids().await, ["u2-a", "u3-a"]);
    // 10.1.1.1 and u1-phone are gone; 10.9.9.9, masked with the current key, no remaining row
    // uses either (u2's row masked it with the old key), so it went too.
    assert_eq!(db.count_of("pii_vault").await, 4);

    // u2's device by value: found under the previous key.
    let keys = [
        ("MASKING_KEY", KEY),
        ("MASKING_KEY_PREVIOUS", OLD_KEY),
        ("MASKING_KEY_PREVIOUS_ID", "k0"),
    ];
    let (ok, stdout, stderr) = pii_tool(&db, &keys, &["forget", "device_id", "u2-phone"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with("deleted 1 rows and 2 vault entries;"),
        "{stdout}"
    );
    assert_eq!(db.stored_message_ids().await, ["u3-a"]);
    assert_eq!(db.count_of("pii_vault").await, 2);

    let (ok, _, stderr) = pii_tool(&db, &[], &["forget", "device_id", "u3-phone"]);
    assert!(!ok);
    assert!(stderr.contains("MASKING_KEY is not set"), "{stderr}");
    assert_eq!(db.stored_message_ids().await, ["u3-a"]);
}

#[tokio::test]
async fn the_function_refuses_a_schema_before_partitions_and_names_the_migration() {
    let db = before_partitions().await;
    let error = Store::connect(db.config(), StoreOptions::default(), in_seconds(10))
        .await
        .err()
        .expect("the old schema is refused")
        .to_string();
    assert!(error.contains("005_partitions.sql"), "{error}");

    // Partitioned, but the unique index the idempotency needs is gone.
    let db = TestDb::new().await;
    db.client()
        .await
        .batch_execute("DROP INDEX user_logins_message_id_key")
        .await
        .unwrap();
    let error = Store::connect(db.config(), StoreOptions::default(), in_seconds(10))
        .await
        .err()
        .expect("a table without the unique index is refused")
        .to_string();
    assert!(
        error.contains("no unique index on (message_id, create_date)")
            && error.contains("005_partitions.sql"),
        "{error}"
    );
}

#[tokio::test]
async fn the_partition_job_runs_while_instances_write_and_loses_nothing() {
    let db = TestDb::new().await;
    let day = today() - Duration::days(10);
    let old = today() - Duration::days(100);
    let client = db.client().await;
    client
        .query("SELECT login_etl_create_partitions($1, $1)", &[&old])
        .await
        .unwrap();
    // Three instances write rows of a day that has no partition yet (so into the default
    // partition), batch after batch, while the job creates that day's partition (moving the
    // rows already there) and drops an old day.
    let sent = sent_at(day, time::macros::time!(09:30));
    let writers: Vec<_> = (0..3)
        .map(|instance| {
            let config = db.config();
            let sent = sent.clone();
            tokio::spawn(async move {
                let processor = processor_on(config).await;
                let mut stored = 0;
                for round in 0..20 {
                    let size = if round % 2 == 0 { 10 } else { LARGE };
                    let batch: Vec<SqsMessage> =
                        good_batch(&format!("w{instance}-r{round:02}"), 0..size)
                            .into_iter()
                            .map(|record| sent_on(record, &sent))
                            .collect();
                    let outcome = processor.process(&batch, in_seconds(20)).await.unwrap();
                    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
                    stored += outcome.stored;
                }
                stored
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let maintained = client
        .query_one(
            "SELECT login_etl_create_partitions($1, $1), (login_etl_drop_before($2)).partitions_dropped",
            &[&day, &(old + Duration::days(1))],
        )
        .await
        .unwrap();
    assert_eq!(
        (maintained.get::<_, i32>(0), maintained.get::<_, i32>(1)),
        (1, 1)
    );
    let mut stored = 0;
    for writer in writers {
        stored += writer.await.unwrap();
    }
    assert_eq!(stored, 3 * 10 * (10 + LARGE));
    let partition: String = client
        .query_one("SELECT login_etl_partition_name($1)", &[&day])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        rows_per_partition(&db).await,
        [(partition, stored as i64)],
        "every row in its day's partition, none left in the default one"
    );
}

#[tokio::test]
async fn the_partition_job_gives_up_rather_than_stall_the_writers_behind_a_long_query() {
    let db = TestDb::new().await;
    let old = today() - Duration::days(100);
    let client = db.client().await;
    client
        .query("SELECT login_etl_create_partitions($1, $1)", &[&old])
        .await
        .unwrap();
    // An analyst's long transaction holds the table.
    let mut analyst = db.client().await;
    let reading = analyst.transaction().await.unwrap();
    reading
        .query("SELECT count(*) FROM user_logins", &[])
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let (ok, _, stderr) = pii_tool(&db, &[], &["partitions", "--retain-days", "30"]);
    assert!(!ok);
    assert!(
        stderr.contains("the partition job failed, nothing changed")
            && stderr.contains("lock timeout"),
        "{stderr}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    reading.rollback().await.unwrap();
    assert!(partition_exists(&db, old).await, "nothing changed");
    let (ok, stdout, stderr) = pii_tool(&db, &[], &["partitions", "--retain-days", "30"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("1 dropped"), "{stdout}");
}

/// Issue 22, 6: `forget` runs while a writer stores a new row of another user with the same ip.
/// The writer has written its row and looked its vault entries up, but not committed (a trigger
/// holds its transaction open for a second), when `forget` deletes the first user's rows and the
/// entries no row uses. Seen from forget's snapshot no row uses the shared ip's entry; committed,
/// the writer's row does, and must stay recoverable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_racing_a_writer_of_the_same_value_keeps_the_entry_the_writer_needs() {
    let db = TestDb::new().await;
    let processor = processor_sealing(&db, KEY).await;
    processor
        .process(
            &[sqs_record("first", &login("u1", "10.7.7.7", "u1-phone"))],
            in_seconds(10),
        )
        .await
        .unwrap();
    db.client()
        .await
        .batch_execute(
            "CREATE FUNCTION hold_the_commit() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$;
             CREATE TRIGGER hold_the_commit AFTER INSERT ON user_logins
                 FOR EACH STATEMENT EXECUTE FUNCTION hold_the_commit();",
        )
        .await
        .unwrap();
    let second = [sqs_record("second", &login("u2", "10.7.7.7", "u2-phone"))];
    let writing = processor.process(&second, in_seconds(10));
    let forgetting = async {
        // Once the writer's statement is done and its transaction is held open.
        let watcher = db.client().await;
        for _ in 0..100 {
            let held: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if held > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let mut client = db.client().await;
        login_etl_pii::lifecycle::forget(
            &mut client,
            &login_etl_pii::lifecycle::Person::UserId("u1".into()),
        )
        .await
        .unwrap()
    };
    let (written, forgotten) = tokio::join!(writing, forgetting);
    assert_eq!(written.unwrap().stored, 1);
    assert_eq!(forgotten.rows_deleted, 1);
    let shared_ip = expected_mask("10.7.7.7");
    let entries: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM pii_vault WHERE masked_value = $1",
            &[&shared_ip],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(entries, 1, "the stored row's ip can still be recovered");
    // u1's own device id is gone with u1's rows; u2's is there.
    assert_eq!(db.count_of("pii_vault").await, 2);
}
