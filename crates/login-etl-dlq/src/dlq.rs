//! The dead-letter queue through the SQS API: read it without deleting, explain each message,
//! send messages back.

use std::fmt;
use std::time::Duration;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageSystemAttributeName,
    QueueAttributeName,
};
use aws_sdk_sqs::Client;
use login_etl_core::login::LoginEvent;
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
    /// All of them, by an SQS message-move task.
    All,
    /// These messageIds, each sent to the source queue and then deleted here.
    Only(Vec<String>),
}

/// What a redrive did.
pub struct Report {
    moved: Vec<String>,
    not_found: Vec<String>,
    by_task: Option<i64>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(count) = self.by_task {
            return write!(f, "moved {count} messages back by an SQS message-move task");
        }
        write!(f, "moved {} messages back", self.moved.len())?;
        for id in &self.moved {
            write!(f, "\nmoved {id}")?;
        }
        for id in &self.not_found {
            write!(f, "\nnot in the dead-letter queue: {id}")?;
        }
        Ok(())
    }
}

fn failed<E: std::error::Error>(call: &str, error: E) -> String {
    format!("{call} failed: {}", DisplayErrorContext(error))
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
            let received = self
                .client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(PER_CALL as i32)
                .visibility_timeout(HIDE_WHILE_READING)
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|e| failed("ReceiveMessage", e))?;
            let batch = received.messages.unwrap_or_default();
            if batch.is_empty() {
                empty_receives += 1;
            } else {
                empty_receives = 0;
                messages.extend(batch);
            }
        }
        Ok(messages)
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

    async fn arn_of(&self, url: &str) -> Result<String, String> {
        self.client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| failed("GetQueueAttributes", e))?
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .ok_or_else(|| format!("{url} has no QueueArn"))
    }

    /// Every message, by an SQS message-move task (SQS moves them itself: none is lost or
    /// doubled by this tool); waits until the task ends.
    async fn move_all(&self, source: &str) -> Result<Report, String> {
        let source_arn = self.arn_of(&self.url).await?;
        let destination_arn = self.arn_of(source).await?;
        self.client
            .start_message_move_task()
            .source_arn(&source_arn)
            .destination_arn(&destination_arn)
            .send()
            .await
            .map_err(|e| failed("StartMessageMoveTask", e))?;
        for _ in 0..600 {
            let tasks = self
                .client
                .list_message_move_tasks()
                .source_arn(&source_arn)
                .max_results(1)
                .send()
                .await
                .map_err(|e| failed("ListMessageMoveTasks", e))?
                .results
                .unwrap_or_default();
            if let Some(task) = tasks.first() {
                match task.status() {
                    Some("COMPLETED") => {
                        return Ok(Report {
                            moved: Vec::new(),
                            not_found: Vec::new(),
                            by_task: Some(task.approximate_number_of_messages_moved()),
                        })
                    }
                    Some("RUNNING") | Some("CANCELLING") | None => {}
                    Some(status) => {
                        return Err(format!(
                            "the message-move task ended {status}: {}",
                            task.failure_reason().unwrap_or("no reason given")
                        ))
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err("the message-move task did not end within 5 minutes; see ListMessageMoveTasks".into())
    }

    /// The named messages: each is sent to the source queue, then deleted here. A message is in
    /// one queue or, for the moment between the two calls, in both: never in none. The others
    /// are made visible again.
    async fn move_only(&self, source: &str, ids: Vec<String>) -> Result<Report, String> {
        let messages = self.receive_all().await?;
        let fifo = source.ends_with(".fifo");
        let mut moved = Vec::new();
        let mut left = Vec::new();
        for message in messages {
            let id = message.message_id().unwrap_or_default().to_owned();
            if !ids.contains(&id) {
                left.push(message);
                continue;
            }
            let mut send = self
                .client
                .send_message()
                .queue_url(source)
                .message_body(message.body().unwrap_or_default())
                .set_message_attributes(message.message_attributes.clone());
            if fifo {
                let group = message
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                    .cloned()
                    .unwrap_or_else(|| id.clone());
                // The old messageId as deduplication id: sent twice within 5 minutes, it is
                // stored once.
                send = send.message_group_id(group).message_deduplication_id(&id);
            }
            send.send()
                .await
                .map_err(|e| failed(&format!("SendMessage of {id}"), e))?;
            self.client
                .delete_message()
                .queue_url(&self.url)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "{id} was sent back but is still in the dead-letter queue; do not redrive it again: {}",
                        failed("DeleteMessage", e)
                    )
                })?;
            moved.push(id);
        }
        self.release(&left).await?;
        let not_found = ids.into_iter().filter(|id| !moved.contains(id)).collect();
        Ok(Report {
            moved,
            not_found,
            by_task: None,
        })
    }
}

/// `<messageId>  receives=<n>  first_sent=<time>  <verdict>`; never a value of the body.
fn explain(message: &Message) -> String {
    let attribute = |name: MessageSystemAttributeName| {
        message
            .attributes
            .as_ref()
            .and_then(|a| a.get(&name))
            .cloned()
    };
    let receives = attribute(MessageSystemAttributeName::ApproximateReceiveCount)
        .unwrap_or_else(|| "?".into());
    let first_sent = attribute(MessageSystemAttributeName::SentTimestamp)
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "?".into());
    let verdict = match LoginEvent::parse(message.body().unwrap_or_default()) {
        Ok(_) => "passes validation now: redrive it".to_owned(),
        Err(rejection) => format!("refused: {rejection}"),
    };
    format!(
        "{}  receives={receives}  first_sent={first_sent}  {verdict}",
        message.message_id().unwrap_or("?")
    )
}
