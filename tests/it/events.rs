//! The sample events in `events/`: each file goes through the real handler code on a fresh
//! database and must end exactly as `events/expected.json` (written by `scripts/gen_events.py`)
//! says; and the checked-in files must be what the generator writes today.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use serde::Deserialize;
use serde_json::Value;
use time::{Date, OffsetDateTime};

const MANIFEST: &str = "expected.json";

#[derive(Deserialize)]
struct Manifest {
    files: BTreeMap<String, Expected>,
}

#[derive(Deserialize)]
struct Expected {
    received: usize,
    stored: usize,
    failed: Vec<ExpectedFailure>,
}

#[derive(Deserialize)]
struct ExpectedFailure {
    #[serde(rename = "messageId")]
    message_id: String,
}

fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("events")
}

/// The names of the event files in `dir` (every `.json` but the manifest).
fn event_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json") && name != MANIFEST)
        .collect()
}

fn read_manifest() -> Manifest {
    let path = events_dir().join(MANIFEST);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `python3 scripts/gen_events.py`",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_event(name: &str) -> SqsEvent {
    let path = events_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not an SQS event: {e}", path.display()))
}

#[test]
fn every_event_file_has_a_manifest_entry_and_every_entry_a_file() {
    let files = event_files(&events_dir());
    let listed: BTreeSet<String> = read_manifest().files.into_keys().collect();
    let unlisted: Vec<_> = files.difference(&listed).collect();
    let missing: Vec<_> = listed.difference(&files).collect();
    assert!(
        unlisted.is_empty() && missing.is_empty(),
        "events/ and events/{MANIFEST} disagree: files without an entry {unlisted:?}, entries \
         without a file {missing:?}; events/ is written by `python3 scripts/gen_events.py`"
    );
    assert!(files.len() >= 4, "too few event files: {files:?}");
}

#[test]
fn every_record_is_shaped_as_the_event_source_mapping_delivers_it() {
    for name in event_files(&events_dir()) {
        for record in read_event(&name).records {
            let id = record.message_id.clone().unwrap_or_default();
            let at = format!("{name}, message {id}");
            assert_eq!(id.len(), 36, "{at}: messageId is not a UUID");
            assert!(record.receipt_handle.is_some(), "{at}: no receiptHandle");
            assert!(record.md5_of_body.is_some(), "{at}: no md5OfBody");
            assert_eq!(record.event_source.as_deref(), Some("aws:sqs"), "{at}");
            let arn = record.event_source_arn.as_deref().unwrap_or_default();
            let region = record.aws_region.as_deref().unwrap_or_default();
            assert!(
                arn.starts_with(&format!("arn:aws:sqs:{region}:")),
                "{at}: {arn}"
            );
            let mut required = vec![
                "ApproximateReceiveCount",
                "SentTimestamp",
                "SenderId",
                "ApproximateFirstReceiveTimestamp",
            ];
            if arn.ends_with(".fifo") {
                required.extend(["SequenceNumber", "MessageGroupId", "MessageDeduplicationId"]);
            }
            for attribute in required {
                assert!(
                    record.attributes.contains_key(attribute),
                    "{at}: attribute {attribute} missing"
                );
            }
        }
    }
}

#[tokio::test]
async fn every_event_file_ends_as_its_manifest_says() {
    let manifest = read_manifest();
    let mut problems = Vec::new();
    for name in event_files(&events_dir()) {
        let Some(expected) = manifest.files.get(&name) else {
            problems.push(format!(
                "{name}: no entry in events/{MANIFEST}; run `python3 scripts/gen_events.py`"
            ));
            continue;
        };
        let records = read_event(&name).records;
        let (db, processor) = TestDb::with_processor().await;
        let outcome = processor
            .process(&records, in_seconds(60))
            .await
            .unwrap_or_else(|e| panic!("{name}: the batch failed as a whole: {e}"));

        let failed: BTreeSet<String> = outcome
            .response()
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        let expected_failed: BTreeSet<String> = expected
            .failed
            .iter()
            .map(|f| f.message_id.clone())
            .collect();
        if failed != expected_failed {
            problems.push(format!(
                "{name}: reported {:?} but the manifest expects {:?}",
                failed.difference(&expected_failed).collect::<Vec<_>>(),
                expected_failed.difference(&failed).collect::<Vec<_>>()
            ));
        }
        let count = usize::try_from(db.count().await).unwrap();
        let tally = (outcome.received, outcome.stored, count);
        let wanted = (expected.received, expected.stored, expected.stored);
        if tally != wanted {
            problems.push(format!(
                "{name}: (received, stored, rows) = {tally:?}, the manifest says {wanted:?}"
            ));
        }
        // Every message ends in exactly one place: a row or a reported failure.
        let stored: BTreeSet<String> = db.stored_message_ids().await.into_iter().collect();
        let all: BTreeSet<String> = records
            .iter()
            .filter_map(|r| r.message_id.clone())
            .collect();
        if !stored.is_disjoint(&failed) || stored.union(&failed).count() != all.len() {
            problems.push(format!(
                "{name}: stored and failed messages do not partition the batch"
            ));
        }
        problems.extend(rows_that_differ_from_their_message(&name, &db, &records).await);
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// Compares each stored row with the message it came from, masks recomputed here.
async fn rows_that_differ_from_their_message(
    name: &str,
    db: &TestDb,
    records: &[SqsMessage],
) -> Vec<String> {
    let by_id: BTreeMap<&str, &SqsMessage> = records
        .iter()
        .filter_map(|r| Some((r.message_id.as_deref()?, r)))
        .collect();
    let rows = db
        .client()
        .await
        .query(
            "SELECT message_id, user_id, device_type, masked_ip, masked_device_id, locale,
                    app_version_text(app_version), create_date
             FROM user_logins",
            &[],
        )
        .await
        .unwrap();
    let mut problems = Vec::new();
    for row in rows {
        let id: String = row.get(0);
        let record = by_id[id.as_str()];
        let body: Value = serde_json::from_str(record.body.as_deref().unwrap()).unwrap();
        let text = |field: &str| body[field].as_str().unwrap().to_owned();
        let ip: IpAddr = text("ip").trim().parse().unwrap();
        let expected = (
            text("user_id"),
            text("device_type"),
            expected_mask(&ip.to_string()),
            expected_mask(text("device_id").trim()),
            body["locale"].as_str().map(str::to_owned),
            three_part_version(&text("app_version")),
            sent_date(record),
        );
        let actual = (
            row.get::<_, String>(1),
            row.get::<_, String>(2),
            row.get::<_, String>(3),
            row.get::<_, String>(4),
            row.get::<_, Option<String>>(5),
            row.get::<_, String>(6),
            row.get::<_, Date>(7),
        );
        if actual != expected {
            problems.push(format!(
                "{name}, message {id}: row {actual:?}, expected {expected:?}"
            ));
        }
    }
    problems
}

/// "0.96" -> "0.96.0", "2.00" -> "2.0.0": how `app_version_text` writes a version back.
fn three_part_version(version: &str) -> String {
    let mut parts: Vec<u32> = version.split('.').map(|p| p.parse().unwrap()).collect();
    parts.resize(3, 0);
    format!("{}.{}.{}", parts[0], parts[1], parts[2])
}

/// The UTC day of the message's SentTimestamp.
fn sent_date(record: &SqsMessage) -> Date {
    let ms: i128 = record.attributes["SentTimestamp"].parse().unwrap();
    OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000)
        .unwrap()
        .date()
}

#[test]
fn the_checked_in_events_are_what_the_generator_writes() {
    let out = std::env::temp_dir().join(format!("login-etl-events-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gen_events.py"))
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("python3 runs (every machine `make test` supports has it)");
    assert!(status.success(), "scripts/gen_events.py failed");
    let mut stale = Vec::new();
    let written: BTreeSet<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let checked_in: BTreeSet<String> = std::fs::read_dir(events_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for name in written.union(&checked_in) {
        let fresh = std::fs::read(out.join(name)).ok();
        let kept = std::fs::read(events_dir().join(name)).ok();
        if fresh != kept {
            stale.push(name.clone());
        }
    }
    std::fs::remove_dir_all(&out).ok();
    assert!(
        stale.is_empty(),
        "events/ is not what scripts/gen_events.py writes ({stale:?} differ or are missing); \
         run `python3 scripts/gen_events.py` and commit events/"
    );
}
