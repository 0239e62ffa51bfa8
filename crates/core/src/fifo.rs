//! FIFO queues: order holds within a message group, so once a message of a group fails, no later
//! message of that group may be stored in the same batch (it is held back and redelivered after
//! the failed one); other groups go on. The planner applies this to invalid messages, the store
//! to rows the database did not take; both through `GroupGate`.

use std::collections::HashSet;

use crate::record::SqsRecord;

/// The kind of queue a batch came from, which decides whether order must be kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QueueKind {
    #[default]
    Standard,
    /// A FIFO queue (its ARN ends in `.fifo`): order within each message group.
    Fifo,
}

impl QueueKind {
    /// The kind of the queue `record` came from (every record of a batch comes from one queue).
    pub fn of(record: &impl SqsRecord) -> Self {
        if record
            .event_source_arn()
            .is_some_and(|arn| arn.ends_with(".fifo"))
        {
            QueueKind::Fifo
        } else {
            QueueKind::Standard
        }
    }

    pub fn is_fifo(self) -> bool {
        self == QueueKind::Fifo
    }
}

/// The message groups with a failed message so far. On a standard queue it never holds anything
/// back. `None` is a group too: a FIFO record without `MessageGroupId` (not one SQS sends).
#[derive(Debug)]
pub struct GroupGate<'a> {
    queue: QueueKind,
    failed: HashSet<Option<&'a str>>,
}

impl<'a> GroupGate<'a> {
    pub fn new(queue: QueueKind) -> Self {
        GroupGate {
            queue,
            failed: HashSet::new(),
        }
    }

    /// A message of `group` failed: later messages of the group are held back.
    pub fn failed(&mut self, group: Option<&'a str>) {
        if self.queue.is_fifo() {
            self.failed.insert(group);
        }
    }

    /// Whether a message of `group` must be held back.
    pub fn holds_back(&self, group: Option<&str>) -> bool {
        self.queue.is_fifo() && self.failed.contains(&group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_holds_back_its_own_group_on_fifo_queues_only() {
        let mut fifo = GroupGate::new(QueueKind::Fifo);
        fifo.failed(Some("g1"));
        assert!(fifo.holds_back(Some("g1")));
        assert!(!fifo.holds_back(Some("g2")));
        assert!(!fifo.holds_back(None));

        let mut standard = GroupGate::new(QueueKind::Standard);
        standard.failed(None);
        assert!(!standard.holds_back(None));
    }
}
