//! End to end through a real SQS API, without Docker: LocalStack's SQS (started by `make test`),
//! `login-etl-esm` as the event source mapping, the real function under `cargo lambda watch`, and
//! a real PostgreSQL. Each test has its own queues, database and function.

use std::collections::HashMap;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::emulator::{log_file, Emulator};
use crate::common::localstack::{self, TestQueue};
use crate::common::*;
use serde_json::{json, Value};
use tokio::time::Instant;

/// The message that is not a login event, as it appears in the real stream.
const NOT_A_LOGIN: &str = r#"{"foo": "oops_wrong_msg_type", "bar": "123"}"#;
/// Bound on anything that takes seconds; a test that reaches it fails and shows the mapping's log.
const PATIENCE: Duration = Duration::from_secs(120);

/// A valid login body, different for every `n`, in the shapes real traffic has.
fn login_body(n: usize) -> String {
    let versions = ["2.3.0", "0.96", "2.00", "9.10", "3.7"];
    let ip = if n.is_multiple_of(7) {
        format!("2001:db8::{:x}", n + 1)
    } else {
        format!("198.51.100.{}", n % 250 + 1)
    };
    json!({
        "user_id": format!("{n:08x}-063a-43a7-b91b-{n:012x}"),
        "app_version": versions[n % versions.len()],
        "device_type": if n.is_multiple_of(2) { "android" } else { "ios" },
        "ip": ip,
        "locale": if n.is_multiple_of(3) { Value::Null } else { json!("RU") },
        "device_id": format!("{:03}-{:02}-{:04}", n % 1000, n % 100, n),
    })
    .to_string()
}

/// The function under `cargo lambda watch` on `database_url`, invoked once with an empty batch so
/// that it is built and started before any message's visibility timeout starts running.
async fn function_on(database_url: &str) -> Emulator {
    let emulator = Emulator::start(&[("DATABASE_URL", database_url), ("MASKING_KEY", KEY)]);
    let response = reqwest::Client::new()
        .post(format!(
            "{}/2015-03-31/functions/login-etl/invocations",
            emulator.url()
        ))
        .body(r#"{"Records":[]}"#)
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .expect("the emulator answers");
    let status = response.status();
    let body = response.text().await.unwrap();
    assert!(status.is_success(), "warm-up invocation: {status} {body}");
    emulator
}

/// The binary `name` of the workspace member of that name (`crates/<name>`), beside this test
/// binary's folder (`target/debug/deps/..`); cargo builds another package's binaries only when
/// asked, which `make test` does.
fn workspace_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let binary = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join(name);
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build -p {name}` (make test does)",
        binary.display()
    );
    binary
}

/// `login-etl-esm` as a child process; its log lines are kept (and copied to LOGIN_ETL_LOG_DIR
/// for the PII scan). Killed when dropped.
struct Esm {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Esm {
    fn start(queue: &TestQueue, function: &Emulator, args: &[&str], rust_log: &str) -> Esm {
        let mut child = Command::new(workspace_binary("login-etl-esm"))
            .args(["--queue-url", &queue.url, "--function-url", &function.url()])
            .args(["--endpoint-url", &localstack::endpoint()])
            .args(args)
            .envs(localstack::ENV.iter().copied())
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("login-etl-esm runs");
        let stderr = child.stderr.take().unwrap();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = lines.clone();
        let mut copy = log_file("esm");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(file) = &mut copy {
                    let _ = writeln!(file, "{line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        Esm { child, lines }
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn lines_with(&self, text: &str) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        lines.iter().filter(|l| l.contains(text)).cloned().collect()
    }

    /// Ctrl-C, as a user would stop it.
    fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for it to exit by itself (draining, or after `interrupt`).
    async fn exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread take the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "login-etl-esm did not exit within {PATIENCE:?}; it said:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn drained(&mut self) {
        let status = self.exit().await;
        assert!(status.success(), "{status}; it said:\n{}", self.log());
        assert!(
            !self.lines_with("drained").is_empty(),
            "no drain: {}",
            self.log()
        );
    }
}

impl Drop for Esm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `check` holds; fails with the mapping's log after PATIENCE.
async fn eventually<F, Fut>(what: &str, esm: &Esm, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}; login-etl-esm said:\n{}",
            esm.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `name=value` of a log line, as a number.
fn field(line: &str, name: &str) -> usize {
    let start = line
        .find(&format!(" {name}="))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        + name.len()
        + 2;
    line[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number in {line}"))
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// The realistic stream: the bodies of events/stream-*.json, in order (99 logins and one message
/// that is not a login event).
fn sample_stream() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/events");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            name.starts_with("stream-") && name.ends_with(".json")
        })
        .collect();
    files.sort();
    let mut bodies = Vec::new();
    for file in files {
        let event: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        for record in event["Records"].as_array().unwrap() {
            bodies.push(record["body"].as_str().unwrap().to_owned());
        }
    }
    bodies
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sample_stream_ends_as_99_rows_one_dead_letter_and_an_empty_queue() {
    let bodies = sample_stream();
    let bad: Vec<usize> = (0..bodies.len())
        .filter(|&i| bodies[i] == NOT_A_LOGIN)
        .collect();
    assert_eq!(
        (bodies.len(), bad.len()),
        (100, 1),
        "events/stream-*.json changed"
    );
    let db = TestDb::new().await;
    let function = function_on(&db.url).await;
    // As deployed: a dead-letter queue after 2 receives; a short visibility timeout for speed.
    let queue = TestQueue::standard("login-queue", 2, Some(2)).await;
    let ids = queue.send_all(&bodies).await;

    let mut esm = Esm::start(&queue, &function, &["--drain"], "info");
    esm.drained().await;

    let mut good = ids.clone();
    let bad_id = good.remove(bad[0]);
    assert_eq!(db.stored_message_ids().await, sorted(good));
    assert_eq!(
        queue.dead_letters().await,
        [(bad_id, NOT_A_LOGIN.to_owned())]
    );
    assert_eq!(queue.depth().await, (0, 0, 0));
    // Every row holds the masks of its own message's values, recomputed here.
    let body_of: HashMap<&String, Value> = ids
        .iter()
        .zip(&bodies)
        .map(|(id, body)| (id, serde_json::from_str(body).unwrap()))
        .collect();
    let rows = db
        .client()
        .await
        .query(
            "SELECT message_id, masked_ip, masked_device_id FROM user_logins",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 99);
    for row in rows {
        let body = &body_of[&row.get::<_, String>(0)];
        let ip: std::net::IpAddr = body["ip"].as_str().unwrap().parse().unwrap();
        let device_id = body["device_id"].as_str().unwrap().trim();
        assert_eq!(row.get::<_, String>(1), expected_mask(&ip.to_string()));
        assert_eq!(row.get::<_, String>(2), expected_mask(device_id));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_body_sent_twice_is_two_logins() {
    let db = TestDb::new().await;
    let function = function_on(&db.url).await;
    let queue = TestQueue::standard("login-twice", 5, None).await;
    let body = login_body(7);
    let ids = queue.send_all(&[body.clone(), body]).await;
    assert_ne!(ids[0], ids[1], "SQS gives every send its own messageId");

    let mut esm = Esm::start(&queue, &function, &["--drain"], "info");
    esm.drained().await;

    assert_eq!(db.stored_message_ids().await, sorted(ids));
    let distinct_masks: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(DISTINCT (masked_ip, masked_device_id)) FROM user_logins",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(distinct_masks, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_redelivered_while_its_batch_gathers_is_stored_once() {
    let db = TestDb::new().await;
    let function = function_on(&db.url).await;
    // The batching window (6 s) outlasts the visibility timeout (1 s), so SQS hands the same
    // messages out again, same messageId and a new receipt handle, into the batch being gathered.
    let queue = TestQueue::standard("login-redelivered", 1, None).await;
    let ids = queue
        .send_all(&(0..3).map(login_body).collect::<Vec<_>>())
        .await;

    let args = ["--drain", "--batch-size", "100", "--batching-window", "6"];
    let mut esm = Esm::start(&queue, &function, &args, "info");
    esm.drained().await;

    let answered = esm.lines_with("batch answered");
    assert!(
        answered
            .iter()
            .any(|l| field(l, "records") > field(l, "distinct") && field(l, "redelivered") > 0),
        "no batch carried a message twice:\n{}",
        esm.log()
    );
    assert_eq!(db.stored_message_ids().await, sorted(ids));
    assert_eq!(queue.depth().await, (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_valid_message_lands_once_when_postgres_drops_out_mid_stream() {
    let db = TestDb::new().await;
    let proxy = Proxy::start(server_port()).await;
    let function = function_on(&proxy.url_for(&db)).await;
    // Three receives before the dead-letter queue: an outage must not send good messages there.
    let queue = TestQueue::standard("login-outage", 2, Some(3)).await;
    let mut esm = Esm::start(&queue, &function, &[], "info");

    let mut sent = queue
        .send_all(&(0..20).map(login_body).collect::<Vec<_>>())
        .await;
    eventually("the first 20 rows", &esm, || async {
        db.count().await == 20
    })
    .await;

    proxy.cut();
    let mut bodies: Vec<String> = (20..40).map(login_body).collect();
    bodies.insert(10, NOT_A_LOGIN.to_owned());
    let mut during = queue.send_all(&bodies).await;
    eventually("a batch failing while PostgreSQL is away", &esm, || async {
        !esm.lines_with("batch failed").is_empty()
    })
    .await;
    proxy.restore();
    eventually("an empty queue", &esm, || async {
        queue.depth().await == (0, 0, 0)
    })
    .await;
    esm.interrupt();
    let status = esm.exit().await;
    assert!(status.success(), "{status}: {}", esm.log());
    assert_eq!(esm.lines_with(" stopped").len(), 1, "{}", esm.log());
    assert!(
        esm.lines_with("batch failed")[0].contains("function error"),
        "{}",
        esm.log()
    );

    let bad = during.remove(10);
    sent.extend(during);
    assert_eq!(db.stored_message_ids().await, sorted(sent));
    assert_eq!(queue.dead_letters().await, [(bad, NOT_A_LOGIN.to_owned())]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fifo_queue_keeps_each_group_in_order_and_a_failure_stops_only_its_own_group() {
    let db = TestDb::new().await;
    let function = function_on(&db.url).await;
    let queue = TestQueue::fifo("login-fifo", 2, Some(2)).await;
    // A1 B1 A2 B2 ... A5 B5, where B3 is not a login event.
    let mut names = Vec::new();
    let mut id_of = HashMap::new();
    for n in 1..=5 {
        for group in ["A", "B"] {
            let name = format!("{group}{n}");
            let body = if name == "B3" {
                NOT_A_LOGIN.to_owned()
            } else {
                login_body(names.len())
            };
            let id = queue.send_to_group(group, &name, &body).await;
            id_of.insert(name.clone(), id);
            names.push(name);
        }
    }
    let name_of: HashMap<String, String> = id_of
        .iter()
        .map(|(name, id)| (id.clone(), name.clone()))
        .collect();

    // DEBUG adds each batch's messageIds, in the order of the event.
    let mut esm = Esm::start(&queue, &function, &["--drain"], "info,login_etl_esm=debug");
    esm.drained().await;

    // Group A went through; group B stopped at B3: B4 and B5 were never written ahead of it,
    // and, retried with B3 as often as B3, they reached the dead-letter queue behind it.
    let stored: Vec<String> = ["A1", "A2", "A3", "A4", "A5", "B1", "B2"]
        .iter()
        .map(|n| id_of[*n].clone())
        .collect();
    assert_eq!(
        db.stored_message_ids().await,
        sorted(stored),
        "{}",
        esm.log()
    );
    let dead: Vec<String> = queue
        .dead_letters()
        .await
        .into_iter()
        .map(|(id, _)| name_of[&id].clone())
        .collect();
    assert_eq!(dead, ["B3", "B4", "B5"]);

    // Rows of a group were written in the group's order: each batch is one transaction, so a
    // row's xmin orders the batches.
    let rows = db
        .client()
        .await
        .query(
            "SELECT message_id, xmin::text::bigint FROM user_logins",
            &[],
        )
        .await
        .unwrap();
    let written_in: HashMap<String, i64> = rows
        .iter()
        .map(|r| (name_of[&r.get::<_, String>(0)].clone(), r.get(1)))
        .collect();
    for group in [["A1", "A2", "A3", "A4", "A5"].as_slice(), &["B1", "B2"]] {
        let order: Vec<i64> = group.iter().map(|n| written_in[*n]).collect();
        assert!(
            order.windows(2).all(|w| w[0] <= w[1]),
            "{group:?} written out of order: {order:?}"
        );
    }

    // Every batch, as delivered, kept each group in order and stored nothing from B3 on.
    let invoked = esm.lines_with("invoking");
    let outcomes: Vec<String> = esm
        .lines()
        .into_iter()
        .filter(|l| l.contains("batch answered") || l.contains("batch failed"))
        .collect();
    assert_eq!(invoked.len(), outcomes.len(), "{}", esm.log());
    assert!(invoked.len() >= 2, "B3 was never retried: {}", esm.log());
    for (k, (invoke, outcome)) in invoked.iter().zip(&outcomes).enumerate() {
        let ids = invoke.split("message_ids=").nth(1).unwrap().trim();
        let batch: Vec<&str> = ids.split(',').map(|id| name_of[id].as_str()).collect();
        for group in ["A", "B"] {
            let in_group: Vec<&&str> = batch.iter().filter(|n| n.starts_with(group)).collect();
            assert!(
                in_group.windows(2).all(|w| w[0] < w[1]),
                "batch {k} out of order: {batch:?}"
            );
        }
        // A failure holds back the later messages of its own group only: in a batch with B3,
        // exactly B3 and the B messages after it are reported; every A message is stored.
        if let Some(b3) = batch.iter().position(|n| *n == "B3") {
            let held_back = batch[b3..].iter().filter(|n| n.starts_with('B')).count();
            assert!(outcome.contains("batch answered"), "batch {k}: {outcome}");
            assert_eq!(
                field(outcome, "reported_failures"),
                held_back,
                "batch {k}: {batch:?} {outcome}"
            );
        }
    }
    // So no A message was held back by B3 and delivered again.
    let deliveries: Vec<String> = invoked
        .iter()
        .flat_map(|invoke| {
            let ids = invoke.split("message_ids=").nth(1).unwrap().trim();
            ids.split(',')
                .map(|id| name_of[id].clone())
                .collect::<Vec<_>>()
        })
        .collect();
    for n in 1..=5 {
        let name = format!("A{n}");
        let times = deliveries.iter().filter(|d| **d == name).count();
        assert_eq!(times, 1, "{name} delivered {times} times: {}", esm.log());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_while_a_batch_gathers_gives_its_messages_back_at_once() {
    let db = TestDb::new().await;
    let function = function_on(&db.url).await;
    // A visibility timeout far longer than the test: only the mapping can make them visible.
    let queue = TestQueue::standard("login-stop", 600, None).await;
    queue
        .send_all(&(0..3).map(login_body).collect::<Vec<_>>())
        .await;
    let args = ["--batch-size", "100", "--batching-window", "300"];
    let mut esm = Esm::start(&queue, &function, &args, "info");
    eventually("the mapping holding all 3 messages", &esm, || async {
        queue.depth().await == (0, 3, 0)
    })
    .await;

    // The stop waits for the poll under way (up to 20 s): a long poll given up half-way could
    // still take messages and hide them for the whole visibility timeout.
    esm.interrupt();
    let status = esm.exit().await;
    assert!(status.success(), "{status}: {}", esm.log());
    // Visible again in seconds (LocalStack applies visibility changes about 1 s late), not in 600.
    eventually("the 3 messages visible again", &esm, || async {
        queue.depth().await == (3, 0, 0)
    })
    .await;
    assert_eq!(db.count().await, 0, "nothing was sent to the function");
}

/// Runs `login-etl-dlq` on LocalStack's SQS: (success, stdout, stderr).
fn dlq_tool(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(workspace_binary("login-etl-dlq"))
        .args(["--endpoint-url", &localstack::endpoint()])
        .args(args)
        .envs(localstack::ENV.iter().copied())
        .output()
        .expect("login-etl-dlq runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// An operator's dead letters: one message the function cannot read, and one the database
/// refused (a rule since removed). `login-etl-dlq list` says why each is there without deleting
/// anything or showing a value; `redrive` sends the one that now passes back, where the function
/// stores it; `redrive --all` empties the dead-letter queue by an SQS message-move task.
#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_are_explained_without_values_and_redriven_once_they_pass() {
    let db = TestDb::new().await;
    db.refuse_banned_user().await;
    let function = function_on(&db.url).await;
    let queue = TestQueue::standard("login-dlq", 2, Some(1)).await;
    let banned = json!({
        "user_id": "banned", "app_version": "2.3.0", "device_type": "ios",
        "ip": "203.0.113.9", "locale": "RU", "device_id": "123-45-6789"
    })
    .to_string();
    let sent = queue
        .send_all(&[login_body(1), NOT_A_LOGIN.to_owned(), banned])
        .await;
    let (good, unreadable, refused) = (&sent[0], &sent[1], &sent[2]);
    let mut esm = Esm::start(&queue, &function, &["--drain"], "info");
    esm.drained().await;
    assert_eq!(db.stored_message_ids().await, std::slice::from_ref(good));
    let dlq = queue.dlq_url.clone().unwrap();

    let (ok, listed, errors) = dlq_tool(&["--dlq-url", &dlq, "list"]);
    assert!(ok, "{errors}");
    let line_of = |id: &str| {
        listed
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} not listed: {listed}"))
            .to_owned()
    };
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(line_of(unreadable).contains("refused: "), "{listed}");
    assert!(
        line_of(refused).contains("passes validation now"),
        "{listed}"
    );
    for line in listed.lines() {
        assert!(
            line.contains("receives=") && line.contains("first_sent=20"),
            "{line}"
        );
    }
    for value in [
        "banned",
        "203.0.113.9",
        "123-45-6789",
        "oops_wrong_msg_type",
    ] {
        assert!(!listed.contains(value), "a value is shown: {listed}");
    }
    eventually("both dead letters visible again", &esm, || async {
        queue.dead_letter_depth().await == (2, 0, 0)
    })
    .await;

    // The rule is gone: the refused message now passes. Only it goes back.
    db.client()
        .await
        .batch_execute("ALTER TABLE user_logins DROP CONSTRAINT no_banned_users")
        .await
        .unwrap();
    let (ok, report, errors) = dlq_tool(&["--dlq-url", &dlq, "redrive", "--message-id", refused]);
    assert!(ok, "{errors}");
    assert!(report.contains(&format!("moved {refused}")), "{report}");
    let mut esm = Esm::start(&queue, &function, &["--drain"], "info");
    esm.drained().await;
    assert_eq!(db.count().await, 2, "{}", esm.log());
    let (_, listed, _) = dlq_tool(&["--dlq-url", &dlq, "list"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.starts_with(unreadable.as_str()), "{listed}");

    // Everything back, by SQS's own message-move task.
    let (ok, report, errors) = dlq_tool(&["--dlq-url", &dlq, "redrive", "--all"]);
    assert!(ok, "{report} {errors}");
    eventually(
        "the dead-letter queue empty, its message in the queue",
        &esm,
        || async { queue.dead_letter_depth().await == (0, 0, 0) && queue.depth().await.0 == 1 },
    )
    .await;
}
