//! One SQS batch -> rows to store + failures to report, and the outcome -> `SqsBatchResponse`.
//!
//! Pure planning, no I/O: the store reports what happened to each row, and this module turns that
//! into the response so that every messageId ends in exactly one place.

use std::collections::HashSet;
use std::fmt;

use aws_lambda_events::event::sqs::SqsBatchResponse;
use time::{Date, OffsetDateTime};

use crate::failure::{Failure, Reason};
use crate::fifo::{GroupGate, QueueKind};
use crate::login::LoginEvent;
use crate::mask::Masker;
use crate::record::{sent_timestamp_millis, SqsRecord, SENT_TIMESTAMP_FORM};
use crate::redrive::{self, Original};
use crate::vault::PiiKind;

/// One `user_logins` row, masked and ready to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRow {
    /// The row's identity, its `message_id` column: the messageId SQS delivered the message
    /// under or, for a message the dead-letter tool sent back, the original message's
    /// (`redrive.rs`), so that every redrive of a message is one row.
    pub message_id: String,
    /// The messageId SQS delivered the message under, when it is not `message_id` (a redrive):
    /// the one `batchItemFailures` must name, as SQS knows no other. `None` for every other
    /// message (no copy of the id).
    pub delivered_as: Option<String>,
    pub user_id: String,
    pub device_type: String,
    pub masked_ip: String,
    pub masked_device_id: String,
    pub locale: Option<String>,
    pub app_version: i32,
    pub create_date: Date,
    /// The message had no `SentTimestamp`, so `create_date` is the day it was stored: only the
    /// INSERT writes such a row, as it claims the messageId first (a redelivery on another day
    /// gets another date; see migration 005).
    pub fallback_date: bool,
    /// Vault entries (AES-SIV of the canonical values) when recovery is on.
    pub sealed_ip: Option<Vec<u8>>,
    pub sealed_device_id: Option<Vec<u8>>,
    /// SQS delivers this message for the first time (`ApproximateReceiveCount` is 1), so it
    /// cannot be stored yet: the store skips looking its id up. Only a hint: should a message
    /// be delivered twice at once, the unique index on (message_id, create_date) still keeps one row.
    /// Never set for a redrive: delivered once under its new id, it may be stored under the
    /// original's.
    pub first_receive: bool,
    /// Where the message stands in the batch as delivered (the response keeps that order).
    pub position: usize,
    /// On a FIFO queue, the message's group (`MessageGroupId`): order holds within a group only.
    pub message_group: Option<String>,
}

impl LoginRow {
    /// The messageId SQS delivered the message under: the one a failure reports.
    pub fn delivered_id(&self) -> &str {
        self.delivered_as.as_deref().unwrap_or(&self.message_id)
    }
}

/// The ids of the keys a batch was masked and sealed with, stored beside the rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyIds {
    pub mask: String,
    pub vault: Option<String>,
}

/// The longest messageId we store (`message_id varchar(128)`); SQS ids are 36-character UUIDs.
pub(crate) const MESSAGE_ID_MAX_CHARS: usize = 128;

/// What to do with one batch.
#[derive(Debug, Default)]
pub struct BatchPlan {
    pub received: usize,
    /// Rows in the global lock order, by messageId, so that concurrent writers of overlapping
    /// batches take their row locks in one order and cannot deadlock; on FIFO queues in delivery
    /// order, which matters there more (their batches are at most 10 messages, written by one
    /// INSERT whose SQL sorts them).
    pub rows: Vec<LoginRow>,
    /// Messages planned into no row: those that are not valid login events (`Reason::Rejected`)
    /// and, on FIFO queues, every later message of the same group (`Reason::HeldBack`).
    pub failures: Vec<Failure>,
    /// The same row identity more than once in this batch (a messageId delivered twice, or a
    /// message and its redrive): stored (or failed) once, reported once.
    pub repeated_in_batch: usize,
    /// Messages whose `login-etl-redrive-of` attribute failed the guard (`redrive.rs`) and was
    /// ignored: each is planned under the messageId it was delivered with. The handler logs
    /// each once, without a value.
    pub ignored_redrives: Vec<IgnoredRedrive>,
    /// On a FIFO queue, after a failure nothing later of the same message group may be stored,
    /// or the group's order breaks; other groups go on (`fifo.rs`).
    pub queue: QueueKind,
    pub key_ids: KeyIds,
}

/// A message whose redrive attribute was ignored, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredRedrive {
    /// The messageId it was delivered with, under which it is planned.
    pub message_id: String,
    pub why: redrive::Ignored,
}

/// A batch we cannot plan at all; the handler returns it as a function error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// `malformed`: why the record is not an SQS record at all, when that is why.
    MissingMessageId {
        position: usize,
        malformed: Option<String>,
    },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::MissingMessageId {
                position,
                malformed,
            } => {
                write!(f, "record {position} of the batch has no messageId")?;
                if let Some(why) = malformed {
                    write!(f, " ({why})")?;
                }
                write!(
                    f,
                    ", so its failure could not be reported; \
                     is the function invoked by an SQS event source mapping?"
                )
            }
        }
    }
}

impl std::error::Error for BatchError {}

/// The dates a row may be given: from today (UTC) back to `oldest` (the first day the partition
/// job keeps, when the function is told its retention), and at most one day ahead.
///
/// A `SentTimestamp` outside them is refused as a permanent failure of its record: a row dated
/// before retention would be counted as stored, deleted by the next partition job and stored
/// again on a redelivery; one far ahead would stay in the default partition for ever. One day
/// ahead allows for clocks that disagree; SQS itself only dates messages in the past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dates {
    pub today: Date,
    pub oldest: Option<Date>,
}

impl Dates {
    /// The dates kept by a partition job that keeps `retain_days` days (today and the days
    /// before it, as `login-etl-pii partitions --retain-days`), or from any day without one.
    pub fn keeping(today: Date, retain_days: Option<u32>) -> Self {
        Dates {
            today,
            oldest: retain_days
                .map(|days| today - time::Duration::days(i64::from(days.max(1)) - 1)),
        }
    }
}

impl From<Date> for Dates {
    /// Any day up to tomorrow.
    fn from(today: Date) -> Self {
        Dates {
            today,
            oldest: None,
        }
    }
}

/// Parses, validates and masks every record of a batch.
pub fn plan_batch<R: SqsRecord>(
    records: &[R],
    masker: &Masker,
    dates: impl Into<Dates>,
) -> Result<BatchPlan, BatchError> {
    Ok(Planner::new(records, masker, dates.into())?.finish())
}

/// Who a record is: the messageId it was delivered with and, for a redrive that passed the
/// guard, the original it names.
#[derive(Debug, Clone, Copy)]
struct Identity<'a> {
    delivered: &'a str,
    original: Option<Original<'a>>,
}

impl<'a> Identity<'a> {
    /// The row's identity: the original's messageId for a redrive, else the delivered one.
    fn row_id(&self) -> &'a str {
        self.original
            .map_or(self.delivered, |original| original.message_id)
    }
}

/// Plans a batch one record at a time.
struct Planner<'a, R> {
    records: &'a [R],
    /// Each record's identity, by position.
    identities: Vec<Identity<'a>>,
    /// The positions of `records` in the order they are planned (see `BatchPlan::rows`).
    order: Vec<usize>,
    masker: &'a Masker,
    dates: Dates,
    /// The row identities planned so far.
    seen: HashSet<&'a str>,
    groups: GroupGate<'a>,
    plan: BatchPlan,
}

impl<'a, R: SqsRecord> Planner<'a, R> {
    /// Fails, before anything is planned or written, when a record has no messageId: such a
    /// batch is refused as a whole.
    fn new(records: &'a [R], masker: &'a Masker, dates: Dates) -> Result<Self, BatchError> {
        if let Some(position) = records.iter().position(|r| message_id_of(r).is_none()) {
            return Err(BatchError::MissingMessageId {
                position,
                malformed: records[position].malformed().map(str::to_owned),
            });
        }
        let mut ignored_redrives = Vec::new();
        let identities: Vec<Identity<'a>> = records
            .iter()
            .map(|record| {
                let delivered = message_id_of(record).expect("checked above");
                let original = record.redrive_of().and_then(|value| {
                    redrive::original(value, record.body().unwrap_or(""))
                        .map_err(|why| {
                            ignored_redrives.push(IgnoredRedrive {
                                message_id: delivered.to_owned(),
                                why,
                            })
                        })
                        .ok()
                });
                Identity {
                    delivered,
                    original,
                }
            })
            .collect();
        let queue = records.first().map(QueueKind::of).unwrap_or_default();
        let mut order: Vec<usize> = (0..records.len()).collect();
        if !queue.is_fifo() {
            // By row identity, the lock order. Stable, so of an identity repeated in the batch
            // the first delivery is the one planned.
            order.sort_by_key(|&position| identities[position].row_id());
        }
        Ok(Planner {
            records,
            identities,
            order,
            masker,
            dates,
            seen: HashSet::with_capacity(records.len()),
            groups: GroupGate::new(queue),
            plan: BatchPlan {
                received: records.len(),
                rows: Vec::with_capacity(records.len()),
                queue,
                key_ids: KeyIds {
                    mask: masker.key_id().to_owned(),
                    vault: masker.recovery_key_id().map(str::to_owned),
                },
                ignored_redrives,
                ..BatchPlan::default()
            },
        })
    }

    fn finish(mut self) -> BatchPlan {
        for i in 0..self.order.len() {
            self.plan_record(self.order[i]);
        }
        self.plan
    }

    fn plan_record(&mut self, position: usize) {
        let record = &self.records[position];
        let identity = self.identities[position];
        if !self.seen.insert(identity.row_id()) {
            self.plan.repeated_in_batch += 1;
            return;
        }
        let fail = |reason: Reason| Failure {
            message_id: identity.delivered.to_owned(),
            redrive_of: identity.original.map(|o| o.message_id.to_owned()),
            reason,
            position,
        };
        // Only FIFO batches have groups: a standard batch pays no lookup per record.
        let group = if self.plan.queue.is_fifo() {
            record.message_group_id()
        } else {
            None
        };
        if self.groups.holds_back(group) {
            self.plan.failures.push(fail(Reason::HeldBack));
            return;
        }
        match row_from(record, identity, position, self.masker, self.dates) {
            Ok(row) => self.plan.rows.push(LoginRow {
                message_group: group.map(str::to_owned),
                ..row
            }),
            Err(why) => {
                self.groups.failed(group);
                self.plan.failures.push(fail(Reason::Rejected(why)));
            }
        }
    }
}

fn message_id_of(record: &impl SqsRecord) -> Option<&str> {
    record.message_id().filter(|id| !id.is_empty())
}

/// SQS delivers the message for the first time (`ApproximateReceiveCount` is 1) and it is not a
/// redrive (delivered once under a new id, it may be stored under the original's).
fn first_receive(record: &impl SqsRecord, identity: Identity) -> bool {
    identity.original.is_none() && record.approximate_receive_count() == Some("1")
}

/// The row of a valid message, or why the message is rejected (the field and the rule, never a
/// value: the text of `Reason::Rejected`).
fn row_from(
    record: &impl SqsRecord,
    identity: Identity,
    position: usize,
    masker: &Masker,
    dates: Dates,
) -> Result<LoginRow, String> {
    if let Some(malformed) = record.malformed() {
        return Err(malformed.to_owned());
    }
    let message_id = identity.row_id();
    // Bytes bound characters from above: count characters only for a long id.
    if message_id.len() > MESSAGE_ID_MAX_CHARS && message_id.chars().count() > MESSAGE_ID_MAX_CHARS
    {
        return Err(format!(
            "messageId is longer than {MESSAGE_ID_MAX_CHARS} characters"
        ));
    }
    let body = record.body().unwrap_or("");
    let event = LoginEvent::parse(body).map_err(|rejection| rejection.to_string())?;
    // A redrive is dated as the original was, so that it meets the original's row.
    let sent_date = match identity.original {
        Some(original) => sent_date(
            Some(original.sent_timestamp),
            "the original SentTimestamp (messageAttributes.login-etl-redrive-of)",
            dates,
        )?,
        None => sent_date(record.sent_timestamp(), "attributes.SentTimestamp", dates)?,
    };
    let masked_ip = masker.mask_ip(event.ip);
    let masked_device_id = masker.mask_device_id(&event.device_id);
    Ok(LoginRow {
        message_id: message_id.to_owned(),
        delivered_as: identity.original.map(|_| identity.delivered.to_owned()),
        user_id: event.user_id.into_owned(),
        device_type: event.device_type.into_owned(),
        sealed_ip: masker.seal(PiiKind::Ip, &masked_ip, event.ip),
        sealed_device_id: masker.seal(PiiKind::DeviceId, &masked_device_id, &event.device_id),
        masked_ip,
        masked_device_id,
        locale: event.locale.map(|l| l.into_owned()),
        app_version: event.app_version.encoded(),
        create_date: sent_date.unwrap_or(dates.today),
        fallback_date: sent_date.is_none(),
        first_receive: first_receive(record, identity),
        position,
        // Set by the planner, for FIFO batches.
        message_group: None,
    })
}

/// The UTC date the message was first sent (`sent`, named `path` in a reason), so a redelivery
/// yields the same row; None where SQS gave no `SentTimestamp` (hand-written events), and the
/// row is dated today.
///
/// One rule for every form: the digits SQS writes and nothing else (no sign, space or
/// fraction; a JSON number is refused when the event is read, `record.rs`), and a date within
/// `dates`.
fn sent_date(sent: Option<&str>, path: &str, dates: Dates) -> Result<Option<Date>, String> {
    let Some(sent) = sent else {
        return Ok(None);
    };
    let refused = || format!("{path} is refused: {SENT_TIMESTAMP_FORM}");
    let millis = sent_timestamp_millis(sent).ok_or_else(refused)?;
    let date = OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .map_err(|_| refused())?
        .date();
    if date > dates.today + time::Duration::days(1) {
        return Err(format!(
            "{path} dates the message more than a day after today (UTC): refused, as its row would stay in the default partition"
        ));
    }
    if dates.oldest.is_some_and(|oldest| date < oldest) {
        return Err(format!(
            "{path} dates the message before the days kept (RETAIN_DAYS): refused, as the partition job would delete its row"
        ));
    }
    Ok(Some(date))
}

/// The final tally of one batch; `failures` become the response, the counts the summary log line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    pub received: usize,
    /// New rows committed by this invocation.
    pub stored: usize,
    /// Messages whose row was already there (a redelivery) or that repeated within the batch.
    pub duplicates: usize,
    /// Messages that are not valid login events (`Reason::Rejected`).
    pub invalid: usize,
    /// On FIFO queues, messages held back behind an earlier failure of their group
    /// (`Reason::HeldBack`), by the planner or the store.
    pub held_back: usize,
    /// Valid messages the database refused or that could not be written in time.
    pub failed: usize,
    pub failures: Vec<Failure>,
}

impl BatchOutcome {
    /// Combines the plan with what the store did; `store_failures` are rows not committed.
    pub fn new(
        plan: BatchPlan,
        inserted: usize,
        already_stored: usize,
        store_failures: Vec<Failure>,
    ) -> Self {
        let mut failures = plan.failures;
        failures.extend(store_failures);
        // Reported in delivery order, whatever order the rows were planned and written in.
        failures.sort_unstable_by_key(|failure| failure.position);
        let count = |kind: fn(&Reason) -> bool| failures.iter().filter(|f| kind(&f.reason)).count();
        let invalid = count(|reason| matches!(reason, Reason::Rejected(_)));
        let held_back = count(|reason| matches!(reason, Reason::HeldBack));
        BatchOutcome {
            received: plan.received,
            stored: inserted,
            duplicates: already_stored + plan.repeated_in_batch,
            invalid,
            held_back,
            failed: failures.len() - invalid - held_back,
            failures,
        }
    }

    pub fn response(&self) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        response.set_failures(self.failures.iter().map(|f| f.message_id.clone()));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::sqs::SqsMessage;
    use time::macros::date;

    const GOOD: &str = r#"{"user_id": "u1", "app_version": "2.3.0", "device_type": "android", "ip": "199.172.111.135", "locale": null, "device_id": "593-47-5928"}"#;

    fn masker() -> Masker {
        Masker::new(&[9; 32]).unwrap()
    }

    fn message(id: &str, body: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.to_owned());
        m.body = Some(body.to_owned());
        m.event_source_arn = Some("arn:aws:sqs:us-east-1:000000000000:login-queue".into());
        m.attributes
            .insert("SentTimestamp".into(), "1700000000000".into());
        m
    }

    fn fifo(mut m: SqsMessage, group: &str) -> SqsMessage {
        m.event_source_arn = Some("arn:aws:sqs:us-east-1:000000000000:login-queue.fifo".into());
        m.attributes.insert("MessageGroupId".into(), group.into());
        m
    }

    const TODAY: Date = date!(2026 - 11 - 25);

    #[test]
    fn turns_a_valid_message_into_a_masked_row() {
        let plan = plan_batch(&[message("m1", GOOD)], &masker(), TODAY).unwrap();
        assert!(plan.failures.is_empty());
        let row = &plan.rows[0];
        assert_eq!(row.message_id, "m1");
        assert_eq!(row.user_id, "u1");
        assert_eq!(row.masked_ip, masker().mask(b"199.172.111.135"));
        assert_eq!(row.masked_device_id, masker().mask(b"593-47-5928"));
        assert_eq!(row.locale, None);
        assert_eq!(row.app_version, 2_003_000);
        // 1700000000000 ms is 2023-11-14T22:13:20Z.
        assert_eq!(row.create_date, date!(2023 - 11 - 14));
    }

    #[test]
    fn tells_first_receives_from_redeliveries() {
        let receive = |id: &str, count: &str| {
            let mut m = message(id, GOOD);
            m.attributes
                .insert("ApproximateReceiveCount".into(), count.into());
            m
        };
        // Without the attribute (a hand-written event) nothing is known: look the id up.
        let unknown = message("m3", GOOD);
        let plan = plan_batch(
            &[receive("m1", "1"), receive("m2", "2"), unknown],
            &masker(),
            TODAY,
        )
        .unwrap();
        let hints: Vec<bool> = plan.rows.iter().map(|r| r.first_receive).collect();
        assert_eq!(hints, [true, false, false]);
    }

    #[test]
    fn uses_today_only_without_a_sent_timestamp() {
        let mut m = message("m1", GOOD);
        m.attributes.clear();
        let records = [m, message("m3", GOOD)];
        let masker = masker();
        // The store writes such a row by INSERT, which claims the fallback date.
        let rows = plan_batch(&records, &masker, TODAY).unwrap().rows;
        assert_eq!((rows[0].create_date, rows[0].fallback_date), (TODAY, true));
        assert_eq!(
            (rows[1].create_date, rows[1].fallback_date),
            (date!(2023 - 11 - 14), false)
        );
        let mut m = message("m2", GOOD);
        m.attributes
            .insert("SentTimestamp".into(), "yesterday".into());
        let plan = plan_batch(&[m], &masker, TODAY).unwrap();
        assert_eq!(
            plan.failures[0].reason,
            Reason::Rejected(format!(
                "attributes.SentTimestamp is refused: {SENT_TIMESTAMP_FORM}"
            ))
        );
    }

    #[test]
    fn every_message_ends_as_a_row_or_a_failure() {
        let records = [
            message("ok1", GOOD),
            message("bad1", "not json"),
            message("ok2", GOOD),
            message("bad2", r#"{"foo": "oops_wrong_msg_type", "bar": "123"}"#),
        ];
        let plan = plan_batch(&records, &masker(), TODAY).unwrap();
        let stored: Vec<_> = plan.rows.iter().map(|r| r.message_id.as_str()).collect();
        assert_eq!(stored, ["ok1", "ok2"]);
        let outcome = BatchOutcome::new(plan, 2, 0, vec![]);
        let failed: Vec<_> = outcome
            .response()
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        assert_eq!(failed, ["bad1", "bad2"]);
        assert_eq!(
            (outcome.received, outcome.stored, outcome.invalid),
            (4, 2, 2)
        );
    }

    #[test]
    fn a_message_id_repeated_in_the_batch_is_planned_once() {
        let records = [
            message("m1", GOOD),
            message("m1", GOOD),
            message("m2", "[]"),
            message("m2", "[]"),
        ];
        let plan = plan_batch(&records, &masker(), TODAY).unwrap();
        assert_eq!(plan.rows.len(), 1);
        assert_eq!(plan.failures.len(), 1);
        assert_eq!(plan.repeated_in_batch, 2);
    }

    #[test]
    fn fifo_batches_stop_a_group_at_its_first_failure_and_let_other_groups_go_on() {
        let records = [
            fifo(message("a", GOOD), "g1"),
            fifo(message("b", GOOD), "g2"),
            fifo(message("c", "{}"), "g1"),
            fifo(message("d", GOOD), "g2"),
            fifo(message("e", GOOD), "g1"),
            fifo(message("f", GOOD), "g3"),
        ];
        let plan = plan_batch(&records, &masker(), TODAY).unwrap();
        let stored: Vec<_> = plan.rows.iter().map(|r| r.message_id.as_str()).collect();
        assert_eq!(
            stored,
            ["a", "b", "d", "f"],
            "delivery order, other groups go on"
        );
        let failed: Vec<_> = plan
            .failures
            .iter()
            .map(|f| f.message_id.as_str())
            .collect();
        assert_eq!(failed, ["c", "e"]);
        assert_eq!(plan.failures[1].reason, Reason::HeldBack);
        assert_eq!(plan.rows[1].message_group.as_deref(), Some("g2"));
        // Counted apart: "e" is a valid login event, held back only for its group's order.
        let outcome = BatchOutcome::new(plan, 4, 0, vec![]);
        assert_eq!(
            (outcome.invalid, outcome.held_back, outcome.failed),
            (1, 1, 0)
        );
    }

    #[test]
    fn standard_batches_go_on_after_a_failure() {
        let records = [message("a", "{}"), message("b", GOOD)];
        assert_eq!(
            plan_batch(&records, &masker(), TODAY).unwrap().rows.len(),
            1
        );
    }

    #[test]
    fn a_record_without_message_id_fails_the_batch() {
        let mut m = message("x", GOOD);
        m.message_id = None;
        assert_eq!(
            plan_batch(&[message("a", GOOD), m], &masker(), TODAY).unwrap_err(),
            BatchError::MissingMessageId {
                position: 1,
                malformed: None
            }
        );
    }

    #[test]
    fn an_overlong_message_id_is_reported_not_stored() {
        let id = "m".repeat(129);
        let plan = plan_batch(&[message(&id, GOOD)], &masker(), TODAY).unwrap();
        assert_eq!(
            plan.failures[0].reason,
            Reason::Rejected("messageId is longer than 128 characters".into())
        );
    }

    /// Issue 22, 7: one rule for every form of SentTimestamp and every date (`Dates`).
    #[test]
    fn sent_timestamps_outside_the_rule_fail_their_record_alone() {
        let sent = |id: &str, value: &str| {
            let mut m = message(id, GOOD);
            m.attributes.insert("SentTimestamp".into(), value.into());
            m
        };
        // 2026-11-25T00:00:00Z and days around it, in ms.
        let day = |offset: i64| ((1_795_564_800 + offset * 86_400) * 1000).to_string();
        let records = [
            sent("today", &day(0)),
            sent("tomorrow", &day(1)),
            sent("in-two-days", &day(2)),
            sent("plus", &format!("+{}", day(0))),
            sent("space", &format!(" {}", day(0))),
            sent("fraction", &format!("{}.5", day(0))),
            sent("six-days-ago", &day(-6)),
            sent("seven-days-ago", &day(-7)),
        ];
        let plan = plan_batch(&records, &masker(), Dates::keeping(TODAY, Some(7))).unwrap();
        let stored: Vec<_> = plan.rows.iter().map(|r| r.message_id.as_str()).collect();
        assert_eq!(stored, ["six-days-ago", "today", "tomorrow"]);
        let reasons: Vec<(&str, String)> = plan
            .failures
            .iter()
            .map(|f| (f.message_id.as_str(), f.reason.to_string()))
            .collect();
        for (id, reason) in &reasons {
            let rule = match *id {
                "in-two-days" => "more than a day after today",
                "seven-days-ago" => "before the days kept (RETAIN_DAYS)",
                _ => SENT_TIMESTAMP_FORM,
            };
            assert!(reason.contains(rule), "{id}: {reason}");
            assert!(
                !reason.contains(&day(0)[..6]),
                "{id} quotes its value: {reason}"
            );
        }
        assert_eq!(reasons.len(), 5);
        // Without a retention every past date is kept, as before.
        let old = plan_batch(&[sent("old", &day(-700))], &masker(), TODAY).unwrap();
        assert_eq!(old.rows.len(), 1);
    }

    /// `message` sent back by the dead-letter tool as `new_id`, `days_later` days after the
    /// original was sent, with the attribute the tool writes.
    fn redrive_of(original: &SqsMessage, new_id: &str, days_later: i64) -> SqsMessage {
        let sent = original.sent_timestamp().unwrap();
        let body = original.body().unwrap();
        let mut m = message(new_id, body);
        let later: i64 = sent.parse::<i64>().unwrap() + days_later * 86_400_000;
        m.attributes
            .insert("SentTimestamp".into(), later.to_string());
        m.attributes
            .insert("ApproximateReceiveCount".into(), "1".into());
        with_attribute(
            m,
            &redrive::mark(original.message_id().unwrap(), sent, body),
        )
    }

    fn with_attribute(mut m: SqsMessage, value: &str) -> SqsMessage {
        let mut attribute = aws_lambda_events::event::sqs::SqsMessageAttribute::default();
        attribute.string_value = Some(value.to_owned());
        attribute.data_type = Some("String".into());
        m.message_attributes
            .insert(redrive::ATTRIBUTE.into(), attribute);
        m
    }

    /// Issue 24, 3: a redrive is stored under the original's id and date, is looked up (it may
    /// be stored already), and is reported under the id SQS delivered it with.
    #[test]
    fn a_redrive_is_the_originals_row_and_is_reported_under_its_own_id() {
        let original = message("orig", GOOD);
        // Sent back three days later, delivered for the first time under its new id.
        let redriven = redrive_of(&original, "new-1", 3);
        let plan = plan_batch(std::slice::from_ref(&redriven), &masker(), TODAY).unwrap();
        assert!(plan.failures.is_empty() && plan.ignored_redrives.is_empty());
        let row = &plan.rows[0];
        assert_eq!(row.message_id, "orig");
        assert_eq!(row.delivered_as.as_deref(), Some("new-1"));
        assert_eq!(row.delivered_id(), "new-1");
        // The original's date (1700000000000 ms), not the redrive's three days later.
        assert_eq!(row.create_date, date!(2023 - 11 - 14));
        assert!(!row.fallback_date);
        assert!(!row.first_receive, "a redrive may be stored already");
        // The same row as the original's, but for the delivered id.
        let first = plan_batch(&[original], &masker(), TODAY).unwrap().rows;
        assert_eq!(
            LoginRow {
                delivered_as: None,
                first_receive: false,
                ..row.clone()
            },
            LoginRow {
                first_receive: false,
                ..first[0].clone()
            }
        );
        // Not stored: SQS is told of the id it delivered.
        let failure = Failure::of(row, Reason::NotConfirmed);
        assert_eq!(failure.message_id, "new-1");
        assert_eq!(failure.redrive_of.as_deref(), Some("orig"));
        let outcome = BatchOutcome::new(plan, 0, 0, vec![failure]);
        let reported: Vec<_> = outcome
            .response()
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        assert_eq!(reported, ["new-1"]);
    }

    /// The original and any number of its redrives in one batch are one row; the one planned is
    /// the first delivered, and the row goes in the lock order by its identity.
    #[test]
    fn a_message_and_its_redrives_in_one_batch_are_one_row() {
        let original = message("m-orig", GOOD);
        let again = redrive_of(&original, "a-redrive", 1);
        let twice = redrive_of(&original, "z-redrive", 2);
        let other = message("m-other", GOOD);
        let plan = plan_batch(&[twice.clone(), other, original, again], &masker(), TODAY).unwrap();
        let rows: Vec<(&str, &str)> = plan
            .rows
            .iter()
            .map(|r| (r.message_id.as_str(), r.delivered_id()))
            .collect();
        assert_eq!(rows, [("m-orig", "z-redrive"), ("m-other", "m-other")]);
        assert_eq!(plan.repeated_in_batch, 2);
        // A redrive that is not a login fails under its own id, naming the original in the log.
        let bad = message("bad-orig", "[]");
        let plan = plan_batch(&[redrive_of(&bad, "bad-new", 1)], &masker(), TODAY).unwrap();
        assert_eq!(plan.failures[0].message_id, "bad-new");
        assert_eq!(plan.failures[0].redrive_of.as_deref(), Some("bad-orig"));
    }

    /// The guard: an attribute not made by the tool for this body is ignored, the message is
    /// planned under its own id (a first receive, as any other), and the plan says why, without
    /// a value.
    #[test]
    fn an_attribute_copied_onto_another_message_or_misshapen_is_ignored() {
        let original = message("orig", GOOD);
        // A producer copied the attributes of a redriven message onto its next message.
        let copied = redrive_of(&original, "unused", 0)
            .message_attributes
            .remove(redrive::ATTRIBUTE)
            .unwrap()
            .string_value
            .unwrap();
        let mut next = with_attribute(message("next", &GOOD.replace("u1", "u2")), &copied);
        next.attributes
            .insert("ApproximateReceiveCount".into(), "1".into());
        let digest = copied.rsplit(' ').next().unwrap();
        let overlong = with_attribute(
            message("overlong", GOOD),
            &format!("{} 1700000000000 {digest}", "a".repeat(129)),
        );
        let ip_as_id = with_attribute(
            message("ip-as-id", GOOD),
            &format!("199.172.111.135 1700000000000 {digest}"),
        );
        let plan = plan_batch(&[next, overlong, ip_as_id], &masker(), TODAY).unwrap();
        let rows: Vec<(&str, Option<&str>, bool)> = plan
            .rows
            .iter()
            .map(|r| {
                (
                    r.message_id.as_str(),
                    r.delivered_as.as_deref(),
                    r.first_receive,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("ip-as-id", None, false),
                ("next", None, true),
                ("overlong", None, false)
            ]
        );
        let ignored: Vec<(&str, redrive::Ignored)> = plan
            .ignored_redrives
            .iter()
            .map(|i| (i.message_id.as_str(), i.why))
            .collect();
        assert_eq!(
            ignored,
            [
                ("next", redrive::Ignored::Body),
                ("overlong", redrive::Ignored::MessageId),
                ("ip-as-id", redrive::Ignored::MessageId),
            ]
        );
    }

    /// The original's date obeys the rules of every date (`Dates`).
    #[test]
    fn a_redrive_whose_original_is_past_retention_is_refused_naming_the_attribute() {
        let original = message("orig", GOOD);
        let plan = plan_batch(
            &[redrive_of(&original, "new", 1)],
            &masker(),
            Dates::keeping(TODAY, Some(30)),
        )
        .unwrap();
        assert_eq!(
            plan.failures[0].reason.to_string(),
            "the original SentTimestamp (messageAttributes.login-etl-redrive-of) dates the message before the days kept (RETAIN_DAYS): refused, as the partition job would delete its row"
        );
        assert_eq!(plan.failures[0].message_id, "new");
    }
}
