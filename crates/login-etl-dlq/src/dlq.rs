//! The dead-letter queue through the SQS API: read it without deleting, explain each message,
//! send messages back, each with `login-etl-redrive-of` naming the original
//! (`login_etl_core::redrive`), so that any number of redrives of a message is one row.

use std::collections::{HashMap, HashSet};
use std::fmt;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageAttributeValue, MessageSystemAttributeName, SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;
use login_etl_core::login::LoginEvent;
use login_etl_core::redrive;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// How long messages stay hidden while the tool reads them: long enough to read a large
/// dead-letter queue; they are made visible again at the end (and by SQS after this anyway).
const HIDE_WHILE_READING: i32 = 120;

/// SQS's limit on messages per receive and per batch call.
const PER_CALL: usize = 10;

pub struct DeadLetters {
    client: Client,
    url: String,
}

/// Which messages to send back.
pub enum Redrive {
    /// All of them.
    All,
    /// These messageIds.
    Only(Vec<String>),
}

/// One message sent back.
struct Moved {
    /// Its messageId in the dead-letter queue.
    id: String,
    /// Its messageId in the source queue.
    new_id: String,
    /// The original its row is stored under, when that is not `id` (it was redriven before).
    original: Option<String>,
}

/// What a redrive did.
pub struct Report {
    moved: Vec<Moved>,
    not_found: Vec<String>,
    /// Messages this run sent back that were dead again before it ended: left for the next run.
    dead_again: usize,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "moved {} messages back", self.moved.len())?;
        for moved in &self.moved {
            write!(f, "\nmoved {} as {}", moved.id, moved.new_id)?;
            if let Some(original) = &moved.original {
                write!(f, " (its row is {original}'s)")?;
            }
        }
        for id in &self.not_found {
            write!(f, "\nnot in the dead-letter queue: {id}")?;
        }
        if self.dead_again > 0 {
            write!(
                f,
                "\n{} messages sent back by this run were dead letters again before it ended; they are left for the next run",
                self.dead_again
            )?;
        }
        Ok(())
    }
}

fn failed<E: std::error::Error>(call: &str, error: E) -> String {
    format!("{call} failed: {}", DisplayErrorContext(error))
}

/// A dead letter as it is sent back: its body and message attributes, with
/// `login-etl-redrive-of` naming the original (`login_etl_core::redrive`).
struct Outgoing {
    id: String,
    /// The original's messageId: the row's identity, and the deduplication id on a FIFO queue.
    original: String,
    body: String,
    attributes: HashMap<String, MessageAttributeValue>,
    group: Option<String>,
}

impl Outgoing {
    /// The message to send back for `message`: an attribute that names an original and passes
    /// the function's guard is kept (a message redriven twice keeps the first original);
    /// otherwise it names this message.
    fn of(message: &Message) -> Result<Self, String> {
        let id = message.message_id().unwrap_or_default().to_owned();
        let body = message.body().unwrap_or_default().to_owned();
        let mut attributes = message.message_attributes.clone().unwrap_or_default();
        let existing = attributes
            .get(redrive::ATTRIBUTE)
            .and_then(|a| a.string_value())
            .and_then(|value| redrive::original(value, &body).ok())
            .map(|original| original.message_id.to_owned());
        let original = match existing {
            Some(original) => original,
            None => {
                let sent = system_attribute(message, MessageSystemAttributeName::SentTimestamp)
                    .ok_or_else(|| format!("{id} has no SentTimestamp; it was not sent back"))?;
                let value = MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(redrive::mark(&id, &sent, &body))
                    .build()
                    .map_err(|e| format!("{id}: {e}"))?;
                attributes.insert(redrive::ATTRIBUTE.to_owned(), value);
                id.clone()
            }
        };
        Ok(Outgoing {
            group: system_attribute(message, MessageSystemAttributeName::MessageGroupId),
            id,
            original,
            body,
            attributes,
        })
    }

    fn moved(self, new_id: String) -> Moved {
        Moved {
            original: (self.original != self.id).then_some(self.original),
            id: self.id,
            new_id,
        }
    }
}

fn system_attribute(message: &Message, name: MessageSystemAttributeName) -> Option<String> {
    message
        .attributes
        .as_ref()
        .and_then(|a| a.get(&name))
        .cloned()
}

impl DeadLetters {
    pub async fn connect(url: &str, endpoint_url: Option<&str>) -> Self {
        let mut loader = aws_config::from_env();
        if let Some(endpoint) = endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        DeadLetters {
            client: Client::new(&loader.load().await),
            url: url.to_owned(),
        }
    }

    /// One line per message: messageId, receives, first sent, and why it is refused.
    pub async fn list(&self) -> Result<Vec<String>, String> {
        let messages = self.receive_all().await?;
        let lines = messages.iter().map(explain).collect();
        self.release(&messages).await?;
        Ok(lines)
    }

    pub async fn redrive(&self, to: Option<String>, which: Redrive) -> Result<Report, String> {
        let source = match to {
            Some(url) => url,
            None => self.source_queue().await?,
        };
        match which {
            Redrive::All => self.move_all(&source).await,
            Redrive::Only(ids) => self.move_only(&source, ids).await,
        }
    }

    /// Every message, each once: received with a visibility timeout, so none comes twice.
    async fn receive_all(&self) -> Result<Vec<Message>, String> {
        let mut messages: Vec<Message> = Vec::new();
        let mut empty_receives = 0;
        // Two empty long polls in a row: SQS samples its servers, one may miss a message.
        while empty_receives < 2 {
            let batch = self.receive(PER_CALL).await?;
            if batch.is_empty() {
                empty_receives += 1;
            } else {
                empty_receives = 0;
                messages.extend(batch);
            }
        }
        Ok(messages)
    }

    /// Up to `count` messages, hidden for `HIDE_WHILE_READING`, with every attribute.
    async fn receive(&self, count: usize) -> Result<Vec<Message>, String> {
        let received = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(count as i32)
            .visibility_timeout(HIDE_WHILE_READING)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| failed("ReceiveMessage", e))?;
        Ok(received.messages.unwrap_or_default())
    }

    /// Makes `messages` visible again at once.
    async fn release(&self, messages: &[Message]) -> Result<(), String> {
        for chunk in messages.chunks(PER_CALL) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .visibility_timeout(0)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            self.client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| failed("ChangeMessageVisibilityBatch", e))?;
        }
        Ok(())
    }

    /// The queue whose redrive policy names this one, if exactly one does.
    async fn source_queue(&self) -> Result<String, String> {
        let sources = self
            .client
            .list_dead_letter_source_queues()
            .queue_url(&self.url)
            .send()
            .await
            .map_err(|e| failed("ListDeadLetterSourceQueues", e))?
            .queue_urls;
        match sources.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(
                "no queue names this one as its dead-letter queue; name the source with --to"
                    .into(),
            ),
            _ => Err(format!(
                "{} queues name this one as their dead-letter queue; choose one with --to",
                sources.len()
            )),
        }
    }

    /// Every message, ten at a time: received (hidden), sent back with `SendMessageBatch`, then
    /// deleted with `DeleteMessageBatch`, until two receives in a row find nothing. Not by an
    /// SQS message-move task: SQS gives the messages it moves a new messageId and SentTimestamp
    /// and no attribute can be added, so a message moved twice (or one already stored) would be
    /// a second row (docs/operations.md). A message this run sent back that is a dead letter
    /// again before the run ends is left hidden until the end, then for the next run.
    async fn move_all(&self, source: &str) -> Result<Report, String> {
        let fifo = source.ends_with(".fifo");
        let mut report = Report {
            moved: Vec::new(),
            not_found: Vec::new(),
            dead_again: 0,
        };
        let mut sent_here: HashSet<String> = HashSet::new();
        let mut dead_again: Vec<Message> = Vec::new();
        let mut empty_receives = 0;
        while empty_receives < 2 {
            let batch = self.receive(PER_CALL).await?;
            if batch.is_empty() {
                empty_receives += 1;
                continue;
            }
            empty_receives = 0;
            let (again, batch): (Vec<Message>, Vec<Message>) = batch
                .into_iter()
                .partition(|m| sent_here.contains(m.message_id().unwrap_or_default()));
            dead_again.extend(again);
            let moved = self.send_back(source, fifo, batch).await;
            match moved {
                Ok(moved) => {
                    sent_here.extend(moved.iter().map(|m| m.new_id.clone()));
                    report.moved.extend(moved);
                }
                Err(error) => {
                    self.release(&dead_again).await?;
                    return Err(format!(
                        "{error}\n(before it: {report})",
                        report = Report {
                            dead_again: dead_again.len(),
                            ..report
                        }
                    ));
                }
            }
        }
        report.dead_again = dead_again.len();
        self.release(&dead_again).await?;
        Ok(report)
    }

    /// The named messages: each is sent back, then deleted here. The others are made visible
    /// again.
    async fn move_only(&self, source: &str, ids: Vec<String>) -> Result<Report, String> {
        let messages = self.receive_all().await?;
        let fifo = source.ends_with(".fifo");
        let (chosen, left): (Vec<Message>, Vec<Message>) = messages
            .into_iter()
            .partition(|m| ids.iter().any(|id| m.message_id() == Some(id.as_str())));
        let mut moved = Vec::new();
        let chunks: Vec<&[Message]> = chosen.chunks(PER_CALL).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            match self.send_back(source, fifo, chunk.to_vec()).await {
                Ok(done) => moved.extend(done),
                Err(error) => {
                    // The chunks not tried yet are visible again too.
                    let untried: Vec<Message> = chunks[i + 1..].concat();
                    self.release(&untried).await?;
                    self.release(&left).await?;
                    return Err(error);
                }
            }
        }
        self.release(&left).await?;
        let not_found = ids
            .into_iter()
            .filter(|id| !moved.iter().any(|m: &Moved| &m.id == id))
            .collect();
        Ok(Report {
            moved,
            not_found,
            dead_again: 0,
        })
    }

    /// Sends `messages` (at most ten) to the source queue, each with `login-etl-redrive-of`,
    /// then deletes those sent from here. A message is in one queue or, for the moment between
    /// the two calls, in both: never in none. Sent twice (a delete that failed, a redrive run
    /// again), it is still one row: both copies name the same original. On any failure the
    /// messages not deleted are made visible again at once, so that the next run sees them.
    async fn send_back(
        &self,
        source: &str,
        fifo: bool,
        messages: Vec<Message>,
    ) -> Result<Vec<Moved>, String> {
        let mut deleted = vec![false; messages.len()];
        let sent = self
            .send_and_delete(source, fifo, &messages, &mut deleted)
            .await;
        if sent.is_err() {
            let left: Vec<Message> = messages
                .into_iter()
                .zip(&deleted)
                .filter(|(_, deleted)| !**deleted)
                .map(|(message, _)| message)
                .collect();
            // Best effort: SQS makes them visible after HIDE_WHILE_READING anyway.
            let _ = self.release(&left).await;
        }
        sent
    }

    async fn send_and_delete(
        &self,
        source: &str,
        fifo: bool,
        messages: &[Message],
        deleted: &mut [bool],
    ) -> Result<Vec<Moved>, String> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let outgoing = messages
            .iter()
            .map(Outgoing::of)
            .collect::<Result<Vec<_>, _>>()?;
        let entries = outgoing
            .iter()
            .enumerate()
            .map(|(i, out)| {
                let mut entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&out.body)
                    .set_message_attributes(Some(out.attributes.clone()));
                if fifo {
                    // The original's messageId as deduplication id: sent back twice within 5
                    // minutes, it is delivered once.
                    entry = entry
                        .message_group_id(out.group.clone().unwrap_or_else(|| out.original.clone()))
                        .message_deduplication_id(&out.original);
                }
                entry.build().expect("id and body are set")
            })
            .collect();
        let sent = self
            .client
            .send_message_batch()
            .queue_url(source)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| failed("SendMessageBatch", e))?;
        let name = |entry_id: &str| {
            entry_id
                .parse::<usize>()
                .ok()
                .and_then(|i| outgoing.get(i))
                .map_or("?", |out| out.id.as_str())
        };
        let mut new_ids: Vec<Option<String>> = vec![None; outgoing.len()];
        for entry in sent.successful() {
            if let Some(slot) = entry
                .id()
                .parse::<usize>()
                .ok()
                .and_then(|i| new_ids.get_mut(i))
            {
                *slot = Some(entry.message_id().to_owned());
            }
        }
        let mut problems: Vec<String> = Vec::new();
        if !sent.failed().is_empty() {
            let refused: Vec<String> = sent
                .failed()
                .iter()
                .map(|f| format!("{} ({})", name(f.id()), f.code()))
                .collect();
            problems.push(format!(
                "SendMessageBatch refused {}: still in the dead-letter queue",
                refused.join(", ")
            ));
        }
        let deletes: Vec<DeleteMessageBatchRequestEntry> = new_ids
            .iter()
            .enumerate()
            .filter(|(_, new_id)| new_id.is_some())
            .map(|(i, _)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(messages[i].receipt_handle().unwrap_or_default())
                    .build()
                    .expect("id and receipt handle are set")
            })
            .collect();
        const AGAIN: &str = "they were sent back but are still in the dead-letter queue; redriving them again is harmless (each keeps its original's row)";
        if !deletes.is_empty() {
            match self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(deletes))
                .send()
                .await
            {
                Ok(done) => {
                    for entry in done.successful() {
                        if let Some(slot) = entry
                            .id()
                            .parse::<usize>()
                            .ok()
                            .and_then(|i| deleted.get_mut(i))
                        {
                            *slot = true;
                        }
                    }
                    if !done.failed().is_empty() {
                        let kept: Vec<String> = done
                            .failed()
                            .iter()
                            .map(|f| format!("{} ({})", name(f.id()), f.code()))
                            .collect();
                        problems.push(format!(
                            "DeleteMessageBatch failed for {}: {AGAIN}",
                            kept.join(", ")
                        ));
                    }
                }
                Err(e) => {
                    let kept: Vec<&str> = outgoing
                        .iter()
                        .zip(&new_ids)
                        .filter(|(_, new_id)| new_id.is_some())
                        .map(|(out, _)| out.id.as_str())
                        .collect();
                    problems.push(format!(
                        "{} for {}: {AGAIN}",
                        failed("DeleteMessageBatch", e),
                        kept.join(", ")
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(outgoing
            .into_iter()
            .zip(new_ids)
            .filter_map(|(out, new_id)| new_id.map(|new_id| out.moved(new_id)))
            .collect())
    }
}

/// `<messageId>  receives=<n>  first_sent=<time>  [redrive_of=<messageId>  ]<verdict>`; never a
/// value of the body.
fn explain(message: &Message) -> String {
    let receives = system_attribute(message, MessageSystemAttributeName::ApproximateReceiveCount)
        .unwrap_or_else(|| "?".into());
    let first_sent = system_attribute(message, MessageSystemAttributeName::SentTimestamp)
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "?".into());
    let body = message.body().unwrap_or_default();
    // A message sent back before: the original whose row it is, when the attribute passes the
    // function's guard (only an id, never a value).
    let redrive_of = message
        .message_attributes
        .as_ref()
        .and_then(|a| a.get(redrive::ATTRIBUTE))
        .and_then(|a| a.string_value())
        .and_then(|value| redrive::original(value, body).ok())
        .map(|original| format!("redrive_of={}  ", original.message_id))
        .unwrap_or_default();
    let verdict = match LoginEvent::parse(body) {
        Ok(_) => "passes validation now: redrive it".to_owned(),
        Err(rejection) => format!("refused: {rejection}"),
    };
    format!(
        "{}  receives={receives}  first_sent={first_sent}  {redrive_of}{verdict}",
        message.message_id().unwrap_or("?")
    )
}
