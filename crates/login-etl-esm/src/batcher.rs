//! Gathering one batch, as Lambda does: records arrive until the batch size is reached, the
//! batching window closes, or the next message might not fit in the 6 MB invocation payload.
//!
//! The window opens when the first message arrives. With no window, one ReceiveMessage call (up
//! to 10 messages) makes the batch.

use std::time::Duration;

use tokio::time::Instant;

use crate::event::{payload_size, record, Received};
use crate::options::{
    Settings, MAX_PAYLOAD_BYTES, SQS_MAX_MESSAGES_PER_CALL as MAX_PER_RECEIVE,
    SQS_MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES, SQS_MAX_WAIT_SECS as MAX_WAIT_SECS,
};
use crate::queue::{Queue, QueueError};
use crate::stop::Stop;

/// Pause between short polls at the end of a window, so an empty queue is not hammered.
const SHORT_POLL_PAUSE: Duration = Duration::from_millis(100);

/// The next ReceiveMessage call of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receive {
    pub max: usize,
    pub wait_secs: i32,
}

/// What to ask SQS for next, or `None` when the batch is complete. Pure.
pub fn next_receive(
    count: usize,
    payload_bytes: usize,
    window_elapsed: Duration,
    settings: &Settings,
) -> Option<Receive> {
    let room = settings.batch_size.saturating_sub(count);
    if room == 0 {
        return None;
    }
    if count == 0 {
        return Some(Receive {
            max: room.min(MAX_PER_RECEIVE),
            wait_secs: settings.receive_wait_secs,
        });
    }
    if payload_bytes + MAX_MESSAGE_BYTES > MAX_PAYLOAD_BYTES {
        return None;
    }
    let left = settings.batching_window.saturating_sub(window_elapsed);
    if left.is_zero() {
        return None;
    }
    Some(Receive {
        max: room.min(MAX_PER_RECEIVE),
        // Whole seconds, rounded down, so a poll never outlasts the window.
        wait_secs: (left.as_secs().min(MAX_WAIT_SECS) as i32).min(settings.receive_wait_secs),
    })
}

/// Splits off the records that would take the payload past `limit`. Pure.
pub fn fit(mut records: Vec<Received>, limit: usize) -> (Vec<Received>, Vec<Received>) {
    let mut keep = records.len();
    while keep > 0 && payload_size(&records[..keep]) > limit {
        keep -= 1;
    }
    let overflow = records.split_off(keep);
    (records, overflow)
}

/// The result of gathering.
pub enum Gathered {
    /// Records to send (empty: the long poll found nothing).
    Batch(Vec<Received>),
    /// A stop was asked for; what had been gathered was released to the queue.
    Stopped,
}

/// Gathers one batch from the queue. A stop takes effect when the current poll returns (at most
/// its wait): what was gathered goes back to the queue.
pub async fn gather(
    queue: &Queue,
    settings: &Settings,
    stop: &Stop,
) -> Result<Gathered, QueueError> {
    let mut batch: Vec<Received> = Vec::new();
    let mut window_opened: Option<Instant> = None;
    loop {
        let elapsed = window_opened.map_or(Duration::ZERO, |opened| opened.elapsed());
        let Some(step) = next_receive(batch.len(), payload_size(&batch), elapsed, settings) else {
            break;
        };
        // Never abandoned half-way: SQS would still hand messages to a long poll the client
        // gave up on, and they would stay hidden for a whole visibility timeout.
        let received = queue.receive(step.max, step.wait_secs).await;
        let messages = match received {
            Ok(messages) => messages,
            Err(error) if batch.is_empty() => return Err(error),
            Err(error) => {
                // Send what we have rather than hold it until the visibility timeout.
                tracing::warn!(%error, "receive failed while gathering; sending the batch so far");
                break;
            }
        };
        if stop.is_set() && messages.is_empty() {
            release(queue, &batch).await;
            return Ok(Gathered::Stopped);
        }
        if messages.is_empty() {
            if batch.is_empty() {
                return Ok(Gathered::Batch(batch));
            }
            if step.wait_secs == 0 {
                tokio::time::sleep(SHORT_POLL_PAUSE).await;
            }
            continue;
        }
        window_opened.get_or_insert_with(Instant::now);
        for message in &messages {
            match record(message, &queue.identity) {
                Ok(received) => batch.push(received),
                Err(error) => tracing::warn!(%error, "message skipped"),
            }
        }
        if stop.is_set() {
            release(queue, &batch).await;
            return Ok(Gathered::Stopped);
        }
    }
    let (batch, overflow) = fit(batch, MAX_PAYLOAD_BYTES);
    if !overflow.is_empty() {
        tracing::debug!(
            released = overflow.len(),
            "messages past the payload limit go back to the queue"
        );
        release(queue, &overflow).await;
    }
    Ok(Gathered::Batch(batch))
}

async fn release(queue: &Queue, records: &[Received]) {
    if records.is_empty() {
        return;
    }
    let handles: Vec<_> = records
        .iter()
        .map(|r| (r.message_id.as_str(), r.receipt_handle.as_str()))
        .collect();
    let settled = queue.release(&handles).await;
    tracing::debug!(
        released = settled.done,
        "gathered messages made visible again"
    );
    for (message_id, why) in &settled.refused {
        tracing::warn!(%message_id, %why, "could not release; it returns after the visibility timeout");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(batch_size: usize, window_secs: u64) -> Settings {
        Settings {
            batch_size,
            batching_window: Duration::from_secs(window_secs),
            max_concurrency: 5,
            drain: false,
            receive_wait_secs: 20,
        }
    }

    fn received(id: &str, len: usize) -> Received {
        Received {
            message_id: id.into(),
            receipt_handle: format!("h-{id}"),
            receive_count: 1,
            record_json: "x".repeat(len),
        }
    }

    #[test]
    fn the_first_receive_long_polls_for_up_to_ten() {
        assert_eq!(
            next_receive(0, 0, Duration::ZERO, &settings(10, 0)),
            Some(Receive {
                max: 10,
                wait_secs: 20
            })
        );
        assert_eq!(
            next_receive(0, 0, Duration::ZERO, &settings(3, 0))
                .unwrap()
                .max,
            3
        );
    }

    #[test]
    fn without_a_window_one_receive_makes_the_batch() {
        assert_eq!(next_receive(4, 100, Duration::ZERO, &settings(10, 0)), None);
    }

    #[test]
    fn a_window_keeps_gathering_until_it_closes_or_the_batch_is_full() {
        let s = settings(100, 5);
        assert_eq!(
            next_receive(10, 100, Duration::from_millis(1_500), &s),
            Some(Receive {
                max: 10,
                wait_secs: 3
            })
        );
        assert_eq!(
            next_receive(95, 100, Duration::from_secs(1), &s)
                .unwrap()
                .max,
            5
        );
        assert_eq!(
            next_receive(10, 100, Duration::from_millis(4_500), &s),
            Some(Receive {
                max: 10,
                wait_secs: 0
            })
        );
        assert_eq!(next_receive(10, 100, Duration::from_secs(5), &s), None);
        // Draining polls for at most 1 s at a time, also inside a window.
        let draining = Settings {
            receive_wait_secs: 1,
            ..s
        };
        assert_eq!(
            next_receive(10, 100, Duration::ZERO, &draining)
                .unwrap()
                .wait_secs,
            1
        );
        assert_eq!(next_receive(100, 100, Duration::ZERO, &s), None);
    }

    #[test]
    fn gathering_stops_when_another_message_might_not_fit() {
        let s = settings(10_000, 300);
        assert!(next_receive(
            10,
            MAX_PAYLOAD_BYTES - MAX_MESSAGE_BYTES,
            Duration::ZERO,
            &s
        )
        .is_some());
        assert_eq!(
            next_receive(
                10,
                MAX_PAYLOAD_BYTES - MAX_MESSAGE_BYTES + 1,
                Duration::ZERO,
                &s
            ),
            None
        );
    }

    #[test]
    fn records_past_the_payload_limit_are_split_off() {
        let records = vec![received("a", 40), received("b", 40), received("c", 40)];
        // {"Records":[ + 40 + , + 40 + ]} = 12 + 81 + 2 = 95
        let (keep, overflow) = fit(records.clone(), 95);
        assert_eq!(keep.len(), 2);
        assert_eq!(overflow[0].message_id, "c");
        let (keep, overflow) = fit(records, 10_000);
        assert_eq!((keep.len(), overflow.len()), (3, 0));
    }
}
