//! A realistic, reproducible stream of SQS login events for the benchmarks.
//!
//! The mix follows the traffic docs/database.md and docs/testing.md describe ("From a message to a row", "Sample
//! events"): `locale` often null, `app_version` in every spelling producers use, mostly IPv4 with
//! some IPv6, about 1% of messages that are not valid login events, and about 0.5% redeliveries
//! (a messageId sent again, with its body). The shares are this benchmark's choice.
//! A fixed seed makes every run see the same events.
#![allow(dead_code)] // each benchmark uses a different part of this module

use std::collections::HashMap;

use aws_lambda_events::event::sqs::SqsMessage;

/// Share of messages that are not valid login events, in per mille.
pub const INVALID_PER_MILLE: u64 = 10;
/// Share of messages that repeat an earlier messageId, in per mille.
pub const REDELIVERED_PER_MILLE: u64 = 5;

/// A benchmark-only key (at least 32 bytes, as the function requires).
pub const MASKING_KEY: &str = "benchmark-masking-key-0123456789abcdef";

/// splitmix64: tiny, fast, and good enough to draw a traffic mix; no dependency needed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    fn uuid(&mut self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }
}

const APP_VERSIONS: &[&str] = &["2.3.0", "0.96", "2.00", "9.10", "3.7", "4.12.1", "5"];
const DEVICE_TYPES: &[&str] = &["android", "ios", "web", "android", "ios"];
const LOCALES: &[&str] = &["RU", "en_US", "de", "pt_BR", "fr"];
const NOT_LOGIN_EVENTS: &[&str] = &[
    r#"{"foo": "oops_wrong_msg_type", "bar": "123"}"#,
    "not json at all",
    "",
    r#"[1, 2, 3]"#,
];

/// A valid login body, as producers send it.
fn login_body(rng: &mut Rng) -> String {
    let user_id = rng.uuid();
    let app_version = rng.pick(APP_VERSIONS);
    let device_type = rng.pick(DEVICE_TYPES);
    let ip = if rng.below(10) == 0 {
        format!(
            "2001:db8:{:x}::{:x}",
            rng.below(0xffff),
            rng.below(0xffff) + 1
        )
    } else {
        format!(
            "{}.{}.{}.{}",
            rng.below(223) + 1,
            rng.below(256),
            rng.below(256),
            rng.below(254) + 1
        )
    };
    let device_id = format!(
        "{:03}-{:02}-{:04}",
        rng.below(1000),
        rng.below(100),
        rng.below(10_000)
    );
    // Producers send `null` for a missing locale about as often as a value.
    let locale = if rng.below(10) < 4 {
        "null".to_string()
    } else {
        format!("\"{}\"", rng.pick(LOCALES))
    };
    format!(
        r#"{{"user_id": "{user_id}", "app_version": "{app_version}", "device_type": "{device_type}", "ip": "{ip}", "locale": {locale}, "device_id": "{device_id}"}}"#
    )
}

/// A body that must be rejected: not a login event, or one field that breaks a rule.
fn invalid_body(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => rng.pick(NOT_LOGIN_EVENTS).to_string(),
        1 => login_body(rng).replacen(r#""ip": ""#, r#""ip": "999."#, 1),
        _ => login_body(rng).replacen(r#""app_version": ""#, r#""app_version": "v"#, 1),
    }
}

/// One SQS record as the event source mapping delivers it.
pub fn sqs_message(message_id: &str, body: &str, sent_ms: u64) -> SqsMessage {
    let mut message = SqsMessage::default();
    message.message_id = Some(message_id.to_owned());
    message.receipt_handle = Some(format!("AQEB{message_id}"));
    message.body = Some(body.to_owned());
    message.md5_of_body = Some("7b270e59b47ff90a553787216d55d91d".to_owned());
    message.event_source = Some("aws:sqs".to_owned());
    message.event_source_arn = Some("arn:aws:sqs:us-east-1:000000000000:login-queue".to_owned());
    message.aws_region = Some("us-east-1".to_owned());
    let attributes: HashMap<String, String> = [
        ("ApproximateReceiveCount", "1".to_string()),
        ("SentTimestamp", sent_ms.to_string()),
        ("SenderId", "AIDAIENQZJOLO23YVJ4VO".to_string()),
        (
            "ApproximateFirstReceiveTimestamp",
            (sent_ms + 40).to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    message.attributes = attributes;
    message
}

/// When the first record was sent: 01:00 UTC today, so that records land in today's partition
/// of user_logins, which the migrations create as the daily partition job does in production
/// (a million records span two hours). Only the date varies from day to day, not the records.
fn sent_from_ms() -> u64 {
    const DAY_MS: u64 = 86_400_000;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as u64;
    now_ms - now_ms % DAY_MS + DAY_MS / 24
}

/// `count` records: valid ones, ~1% invalid, ~0.5% redeliveries of an earlier record (same
/// messageId and body), which may fall in the same or an earlier batch.
pub fn records(seed: u64, count: usize) -> Vec<SqsMessage> {
    let mut rng = Rng::new(seed);
    let mut out: Vec<SqsMessage> = Vec::with_capacity(count);
    let base_ms = sent_from_ms();
    for i in 0..count {
        let draw = rng.below(1000);
        if draw < REDELIVERED_PER_MILLE && !out.is_empty() {
            let earlier = rng.below(out.len() as u64) as usize;
            let mut again = out[earlier].clone();
            again
                .attributes
                .insert("ApproximateReceiveCount".into(), "2".into());
            out.push(again);
            continue;
        }
        let body = if draw < REDELIVERED_PER_MILLE + INVALID_PER_MILLE {
            invalid_body(&mut rng)
        } else {
            login_body(&mut rng)
        };
        out.push(sqs_message(&rng.uuid(), &body, base_ms + i as u64 * 7));
    }
    out
}
