//! The SQS calls the mapping makes: read the queue's identity, receive, delete, release, measure.

use std::fmt;

use aws_config::SdkConfig;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName, QueueAttributeName,
};
use aws_sdk_sqs::Client;

use crate::event::QueueIdentity;
use crate::options::SQS_MAX_MESSAGES_PER_CALL as SQS_BATCH_LIMIT;

/// An SQS call failed; the text carries the SDK's whole error chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueError(pub String);

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QueueError {}

fn failed<E: std::error::Error>(call: &str, error: E) -> QueueError {
    QueueError(format!("{call} failed: {}", DisplayErrorContext(error)))
}

/// How many messages the queue holds, by state (SQS's approximate counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

impl Depth {
    pub fn is_empty(&self) -> bool {
        self.visible == 0 && self.in_flight == 0 && self.delayed == 0
    }
}

/// What a delete (or release) of some messages achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settled {
    pub done: usize,
    /// messageIds SQS refused, with its reason code.
    pub refused: Vec<(String, String)>,
}

/// One queue, as the mapping sees it.
pub struct Queue {
    client: Client,
    url: String,
    pub identity: QueueIdentity,
}

impl Queue {
    /// Reads the queue's ARN (the event's `eventSourceARN`) and so checks that it is reachable.
    pub async fn open(config: &SdkConfig, url: &str) -> Result<Queue, QueueError> {
        let client = Client::new(config);
        let attributes = client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| failed(&format!("GetQueueAttributes on {url}"), e))?;
        let arn = attributes
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .ok_or_else(|| QueueError(format!("{url} has no QueueArn attribute")))?;
        let fallback_region = config.region().map_or("us-east-1", |r| r.as_ref());
        Ok(Queue {
            identity: QueueIdentity::from_arn(arn, fallback_region),
            client,
            url: url.to_owned(),
        })
    }

    /// One ReceiveMessage call with every system and message attribute, as Lambda asks for them.
    pub async fn receive(&self, max: usize, wait_secs: i32) -> Result<Vec<Message>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, SQS_BATCH_LIMIT) as i32)
            .wait_time_seconds(wait_secs.clamp(0, 20))
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| failed("ReceiveMessage", e))?;
        Ok(output.messages.unwrap_or_default())
    }

    /// Deletes messages by receipt handle: `(messageId, receiptHandle)` pairs.
    pub async fn delete(&self, messages: &[(&str, &str)]) -> Settled {
        settle(messages, |chunk| async move {
            let entries = chunk.iter().enumerate().map(|(i, (_, handle))| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(*handle)
                    .build()
                    .expect("id and receipt handle are set")
            });
            let output = self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries.collect()))
                .send()
                .await
                .map_err(|e| failed("DeleteMessageBatch", e))?;
            Ok(BatchAnswer {
                succeeded: output.successful().len(),
                refused: refusals(chunk, output.failed().iter().map(|f| (f.id(), f.code()))),
            })
        })
        .await
    }

    /// Makes messages visible again at once (visibility timeout 0), for batches gathered but not
    /// sent: on a stop, or what would push a batch past the payload limit.
    pub async fn release(&self, messages: &[(&str, &str)]) -> Settled {
        settle(messages, |chunk| async move {
            let entries = chunk.iter().enumerate().map(|(i, (_, handle))| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(*handle)
                    .visibility_timeout(0)
                    .build()
                    .expect("id and receipt handle are set")
            });
            let output = self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries.collect()))
                .send()
                .await
                .map_err(|e| failed("ChangeMessageVisibilityBatch", e))?;
            Ok(BatchAnswer {
                succeeded: output.successful().len(),
                refused: refusals(chunk, output.failed().iter().map(|f| (f.id(), f.code()))),
            })
        })
        .await
    }

    /// The queue's message counts.
    pub async fn depth(&self) -> Result<Depth, QueueError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| failed("GetQueueAttributes", e))?;
        let count = |name: QueueAttributeName| -> u64 {
            output
                .attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(Depth {
            visible: count(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: count(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        })
    }
}

/// Maps the entry ids of a batch call's failures back to messageIds.
/// What SQS answered to one batch call.
struct BatchAnswer {
    succeeded: usize,
    refused: Vec<(String, String)>,
}

/// Runs one batch call per chunk of at most `SQS_BATCH_LIMIT` messages and adds up what SQS
/// did; a call that fails refuses its whole chunk.
async fn settle<'m, F, Fut>(messages: &'m [(&'m str, &'m str)], call: F) -> Settled
where
    F: Fn(&'m [(&'m str, &'m str)]) -> Fut,
    Fut: std::future::Future<Output = Result<BatchAnswer, QueueError>>,
{
    let mut settled = Settled::default();
    for chunk in messages.chunks(SQS_BATCH_LIMIT) {
        match call(chunk).await {
            Ok(answer) => {
                settled.done += answer.succeeded;
                settled.refused.extend(answer.refused);
            }
            Err(QueueError(why)) => {
                settled
                    .refused
                    .extend(chunk.iter().map(|(id, _)| (id.to_string(), why.clone())));
            }
        }
    }
    settled
}

fn refusals<'a>(
    chunk: &[(&str, &str)],
    failures: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<(String, String)> {
    failures
        .map(|(entry, code)| {
            let id = entry
                .parse::<usize>()
                .ok()
                .and_then(|i| chunk.get(i))
                .map_or_else(|| format!("entry {entry}"), |(id, _)| id.to_string());
            (id, code.to_owned())
        })
        .collect()
}
