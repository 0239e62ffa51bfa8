//! Many instances at once against one PostgreSQL, as SQS makes them: the same message delivered
//! to two instances at once, and the same users (so the same masks, the same vault entries) in
//! every batch. Eight processors, each with its own connection like eight Lambda execution
//! environments, write overlapping batches in step, in different orders, on both write paths,
//! with and without the vault. None may fail a batch or a message, and every message must end
//! as exactly one row, counted as new by exactly one instance.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::common::*;
use login_etl::handler::Processor;
use login_etl_core::batch::BatchOutcome;
use login_etl_core::mask::Masker;
use login_etl_core::vault::RecoveryKey;
use tokio::sync::Barrier;

const INSTANCES: usize = 8;
const ROUNDS: usize = 6;
/// Users shared by every batch of a round: few, so that concurrent batches meet on the same vault
/// entries; new ones each round, as a vault entry stored already is no longer contended.
const USERS: usize = 12;

/// A small deterministic generator, so a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % below as u64) as usize
    }
}

/// The login of user `user`: every message of one user has the same ip and device id.
fn login_of(user: usize) -> String {
    body_with_values(
        &format!("user-{user:03}"),
        &format!("10.{}.0.{}", user / 200, user % 200 + 1),
        &format!("device-{user:03}"),
    )
}

fn body_with_values(user_id: &str, ip: &str, device_id: &str) -> String {
    let mut body: serde_json::Value = serde_json::from_str(GOOD_BODY).unwrap();
    body["user_id"] = user_id.into();
    body["ip"] = ip.into();
    body["device_id"] = device_id.into();
    body.to_string()
}

/// Which messages the instances get at once.
#[derive(Clone, Copy)]
enum Delivery {
    /// SQS hands the same message to several instances: each takes `size` of the round's
    /// `2 * size` messages, so any two share about half their ids, met in different orders.
    Overlapping,
    /// Every instance its own messages, of the same users (so only the vault is shared).
    Distinct,
}

/// Instance `instance`'s batch in `round`, shuffled its own way. About a third are marked as
/// redeliveries, so the COPY path also looks ids up.
fn batch_of(
    round: usize,
    instance: usize,
    size: usize,
    delivery: Delivery,
) -> Vec<aws_lambda_events::event::sqs::SqsMessage> {
    let mut rng = Lcg((round * 1_000 + instance) as u64 + 7);
    let mut ids: Vec<usize> = (0..2 * size).collect();
    for i in (1..ids.len()).rev() {
        ids.swap(i, rng.next(i + 1));
    }
    ids.truncate(size);
    ids.into_iter()
        .map(|n| {
            let id = match delivery {
                Delivery::Overlapping => format!("r{round}-m{n:05}"),
                Delivery::Distinct => format!("r{round}-i{instance}-m{n:05}"),
            };
            let mut record = sqs_record(&id, &login_of(round * USERS + n % USERS));
            if rng.next(3) == 0 {
                record
                    .attributes
                    .insert("ApproximateReceiveCount".into(), "2".into());
            }
            record
        })
        .collect()
}

/// Runs every round on `INSTANCES` processors at once and checks the table.
async fn eight_instances_write_at_once(size: usize, delivery: Delivery, with_vault: bool) {
    let db = TestDb::new().await;
    let mut processors = Vec::new();
    for _ in 0..INSTANCES {
        let mut masker = Masker::new(KEY.as_bytes()).unwrap();
        if with_vault {
            masker = masker.with_recovery(RecoveryKey::from_hex("r1", &"42".repeat(64)).unwrap());
        }
        processors.push(Arc::new(processor_masking_with(db.config(), masker).await));
    }
    let start_together = Arc::new(Barrier::new(INSTANCES));
    let mut instances = Vec::new();
    for (instance, processor) in processors.into_iter().enumerate() {
        let start_together = start_together.clone();
        instances.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for round in 0..ROUNDS {
                let records = batch_of(round, instance, size, delivery);
                start_together.wait().await;
                outcomes.push(process(&processor, &records).await);
            }
            outcomes
        }));
    }
    let mut outcomes: Vec<Result<BatchOutcome, String>> = Vec::new();
    for instance in instances {
        outcomes.extend(instance.await.unwrap());
    }

    let whole_batch_failures: Vec<&String> =
        outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(
        whole_batch_failures.is_empty(),
        "{} of {} invocations failed whole: {:?}",
        whole_batch_failures.len(),
        outcomes.len(),
        &whole_batch_failures[..whole_batch_failures.len().min(3)]
    );
    let outcomes: Vec<BatchOutcome> = outcomes.into_iter().map(Result::unwrap).collect();
    let failures: Vec<_> = outcomes.iter().flat_map(|o| o.failures.iter()).collect();
    assert!(
        failures.is_empty(),
        "{} messages failed, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );

    let sent: BTreeSet<String> = (0..ROUNDS)
        .flat_map(|round| (0..INSTANCES).flat_map(move |i| batch_of(round, i, size, delivery)))
        .map(|record| record.message_id.unwrap())
        .collect();
    let stored = db.stored_message_ids().await;
    assert_eq!(stored.len(), sent.len(), "one row per message, none twice");
    assert_eq!(stored.into_iter().collect::<BTreeSet<_>>(), sent);
    let claimed_new: usize = outcomes.iter().map(|o| o.stored).sum();
    assert_eq!(
        claimed_new,
        sent.len(),
        "each row counted as new by exactly one instance"
    );
    assert_eq!(
        deadlocks_seen_by_the_server(&db).await,
        0,
        "the lock order leaves no deadlock for the retries to catch"
    );
    if with_vault {
        let entries: i64 = db
            .client()
            .await
            .query_one("SELECT count(*) FROM pii_vault", &[])
            .await
            .unwrap()
            .get(0);
        // Each user has one ip and one device id: two vault entries.
        assert_eq!(entries, (2 * USERS * ROUNDS) as i64);
    }
}

/// `pg_stat_database.deadlocks` of the test's database, once every instance has disconnected (a
/// backend reports its counters when it exits).
async fn deadlocks_seen_by_the_server(db: &TestDb) -> i64 {
    let client = db.client().await;
    for _ in 0..100 {
        let others: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if others == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    client
        .query_one(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn process(
    processor: &Processor,
    records: &[aws_lambda_events::event::sqs::SqsMessage],
) -> Result<BatchOutcome, String> {
    processor
        .process(records, in_seconds(30))
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_instances_given_the_same_small_batches_insert_each_message_once() {
    eight_instances_write_at_once(10, Delivery::Overlapping, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_instances_given_the_same_large_batches_copy_each_message_once() {
    eight_instances_write_at_once(150, Delivery::Overlapping, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_instances_given_the_same_batches_with_the_vault_store_each_message_once() {
    eight_instances_write_at_once(50, Delivery::Overlapping, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_instances_with_small_batches_of_the_same_users_fill_the_vault_without_deadlocks() {
    eight_instances_write_at_once(10, Delivery::Distinct, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_instances_with_large_batches_of_the_same_users_fill_the_vault_without_deadlocks() {
    eight_instances_write_at_once(150, Delivery::Distinct, true).await;
}
