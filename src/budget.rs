//! Where an invocation's time goes, step by step: one `batch time budget` line per batch at
//! debug level, which the shapes benchmark reads to draw the time budget (docs/benchmarks.md,
//! "Time budget"). Nothing is logged or kept at other levels but a few clock readings.
//!
//! The steps are laps of one stopwatch: each ends where the next begins, so they add up to the
//! handler's time exactly and nothing falls between them (a wait, such as a retry's pause or a
//! connection in use, goes to the step after it). The store marks its laps without being handed
//! the stopwatch: it lives in a task-local (`measure`), one per invocation, so a write outside
//! `measure` (tests, tools) marks nothing.

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// One step of an invocation, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Parsing, validating and masking the records (`plan_batch`).
    Plan,
    /// Opening a connection, where there was none (a reconnect, or a first write after a start
    /// that did not connect).
    Connect,
    /// From the write's start to the answer of the stored-ids lookup (redelivered messages only;
    /// none, no lookup): BEGIN with the deadline, the lookup and the COPY's start go out together,
    /// so this is the round trip and the server's work on the first two.
    Lookup,
    /// From the lookup's answer (or, without one, the write's start) to the server asking for the
    /// COPY's rows: the server starting the COPY (and, without a lookup, the round trip).
    CopyStart,
    /// Encoding the rows and handing them to the connection.
    CopyRows,
    /// From the last row to the COPY's answer: the rest of the sending, and the server storing
    /// the rows and their index entries.
    CopyEnd,
    /// The INSERT (batches under 100 rows, and a COPY's fallback): BEGIN with the deadline and the
    /// INSERT go out together; a round trip and the server's work.
    Insert,
    /// From the write's answer to the COMMIT's: the server's WAL flush (the COMMIT went out with
    /// the write).
    Commit,
    /// Logging the outcome and the metrics line.
    Report,
}

/// How many steps there are.
const STEPS: usize = Step::Report as usize + 1;

/// The time each step took in one invocation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Budget {
    spent: [Duration; STEPS],
}

impl Budget {
    pub fn spent(&self, step: Step) -> Duration {
        self.spent[step as usize]
    }

    pub fn total(&self) -> Duration {
        self.spent.iter().sum()
    }

    /// The debug line the shapes benchmark reads: `decoded_in` (the event's JSON, read before the
    /// handler runs: `event::Decoded`), each step, and the handler's total, in whole microseconds.
    pub fn log(&self, decoded_in: Duration) {
        let us = |d: Duration| d.as_micros() as u64;
        let [plan, connect, lookup, copy_start, copy_rows, copy_end, insert, commit, report] =
            self.spent.map(us);
        tracing::debug!(
            decode_us = us(decoded_in),
            plan_us = plan,
            connect_us = connect,
            lookup_us = lookup,
            copy_start_us = copy_start,
            copy_rows_us = copy_rows,
            copy_end_us = copy_end,
            insert_us = insert,
            commit_us = commit,
            report_us = report,
            handler_us = us(self.total()),
            "batch time budget"
        );
    }
}

/// The running stopwatch of one invocation.
struct Stopwatch {
    last: Instant,
    budget: Budget,
}

tokio::task_local! {
    static STOPWATCH: RefCell<Stopwatch>;
}

/// Ends the current step: the time since the last lap (or since `measure` began) goes to `step`.
/// Outside `measure`, nothing.
pub fn lap(step: Step) {
    // Err: no stopwatch in this task.
    let _ = STOPWATCH.try_with(|stopwatch| {
        let mut stopwatch = stopwatch.borrow_mut();
        let now = Instant::now();
        let since = now - stopwatch.last;
        stopwatch.last = now;
        stopwatch.budget.spent[step as usize] += since;
    });
}

/// Runs `work` with a stopwatch for its laps; the time after the last lap goes to `Step::Report`.
pub async fn measure<T>(work: impl Future<Output = T>) -> (T, Budget) {
    let stopwatch = RefCell::new(Stopwatch {
        last: Instant::now(),
        budget: Budget::default(),
    });
    STOPWATCH
        .scope(stopwatch, async {
            let value = work.await;
            lap(Step::Report);
            let budget = STOPWATCH.with(|stopwatch| stopwatch.borrow().budget.clone());
            (value, budget)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn laps_go_to_their_steps_and_add_up_to_no_more_than_the_whole() {
        let pause = |ms| tokio::time::sleep(Duration::from_millis(ms));
        let started = Instant::now();
        let ((), budget) = measure(async {
            pause(3).await;
            lap(Step::Plan);
            pause(5).await;
            lap(Step::CopyStart);
            pause(2).await;
            lap(Step::Commit);
            pause(1).await;
            lap(Step::Commit);
            pause(4).await;
        })
        .await;
        let elapsed = started.elapsed();
        let at_least = |step, ms| {
            assert!(
                budget.spent(step) >= Duration::from_millis(ms),
                "{step:?}: {budget:?}"
            )
        };
        at_least(Step::Plan, 3);
        at_least(Step::CopyStart, 5);
        at_least(Step::Commit, 3);
        at_least(Step::Report, 4);
        assert_eq!(budget.spent(Step::Insert), Duration::ZERO);
        assert!(budget.total() <= elapsed, "{budget:?} in {elapsed:?}");
    }

    #[test]
    fn a_lap_outside_a_measurement_is_ignored() {
        lap(Step::Plan);
    }
}
