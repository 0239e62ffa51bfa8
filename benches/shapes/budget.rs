//! The time budget of the Rust function's batches: where each millisecond of an invocation goes.
//!
//! The function, run with `AWS_LAMBDA_LOG_LEVEL=debug` and JSON logs, writes one `batch time
//! budget` line per batch (src/budget.rs): the event's decoding and the handler's steps, which add
//! up to the handler's time. What the invocation took beyond decoding and the handler, as the
//! stand-in Runtime API timed it, is the Runtime API's part: handing the event over, and the
//! response back. The proxy counts the round trips (`proxy.rs`).

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// The parts of an invocation, in the order of the CSV's columns and the plot's stack: first the
/// Runtime API's, then the fields of the function's line (microseconds there, ms here).
pub const PARTS: [(&str, &str); 11] = [
    ("runtime_api_ms", ""),
    ("decode_ms", "decode_us"),
    ("plan_ms", "plan_us"),
    ("connect_ms", "connect_us"),
    ("lookup_ms", "lookup_us"),
    ("copy_start_ms", "copy_start_us"),
    ("copy_rows_ms", "copy_rows_us"),
    ("copy_end_ms", "copy_end_us"),
    ("insert_ms", "insert_us"),
    ("commit_ms", "commit_us"),
    ("report_ms", "report_us"),
];

/// The CSV's header: the cell, the invocation, `PARTS`, the round trips and the COPY baseline's.
pub fn csv_header() -> String {
    let parts: Vec<&str> = PARTS.iter().map(|(column, _)| *column).collect();
    format!(
        "memory_mb,rtt_ms,batch_size,batches,invocation_ms,{},round_trips,copy_baseline_ms,copy_baseline_round_trips",
        parts.join(",")
    )
}

/// One batch's `batch time budget` line: the function's fields, in microseconds.
struct Line {
    fields: serde_json::Map<String, serde_json::Value>,
}

impl Line {
    fn us(&self, field: &str) -> f64 {
        self.fields[field]
            .as_f64()
            .unwrap_or_else(|| panic!("the budget line has no number {field}"))
    }
}

/// The function's log file, read as it grows.
pub struct Log {
    path: PathBuf,
    read_to: u64,
}

impl Log {
    /// A fresh file in the temporary directory, and the function's stdout and stderr into it.
    pub fn create(name: &str) -> (Log, Stdio, Stdio) {
        let path = std::env::temp_dir().join(format!(
            "login-etl-shapes-{name}-{}.log",
            std::process::id()
        ));
        let file = File::create(&path).expect("create the function's log file");
        let stderr = file.try_clone().expect("clone the log file");
        (Log { path, read_to: 0 }, file.into(), stderr.into())
    }

    /// The budget lines written since the last call.
    fn new_lines(&mut self) -> Vec<Line> {
        let mut file = File::open(&self.path).expect("open the function's log");
        file.seek(SeekFrom::Start(self.read_to)).expect("seek");
        let mut reader = BufReader::new(file);
        let mut lines = Vec::new();
        let mut text = String::new();
        while reader.read_line(&mut text).expect("read the log") > 0 {
            if !text.ends_with('\n') {
                break; // a line still being written: read it next time
            }
            self.read_to += text.len() as u64;
            if let Ok(serde_json::Value::Object(mut line)) = serde_json::from_str(&text) {
                if let Some(serde_json::Value::Object(fields)) = line.remove("fields") {
                    if fields.get("message").and_then(|m| m.as_str()) == Some("batch time budget") {
                        lines.push(Line { fields });
                    }
                }
            }
            text.clear();
        }
        lines
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        std::fs::remove_file(&self.path).ok();
    }
}

/// The mean of each part over a cell's measured batches, and the round trips.
pub struct CellBudget {
    pub batches: usize,
    pub invocation_ms: f64,
    /// In the order of `PARTS`.
    pub parts_ms: [f64; PARTS.len()],
    pub round_trips: f64,
}

impl CellBudget {
    /// From the lines the function wrote for this cell (warm-up batches first, then one per
    /// entry of `durations`) and the round trips the proxy counted for each measured batch.
    pub fn read(log: &mut Log, warm_up: usize, durations: &[Duration], turns: &[u64]) -> Self {
        let lines = log.new_lines();
        assert_eq!(
            lines.len(),
            warm_up + durations.len(),
            "one budget line per batch (is the function logging at debug level, as JSON?)"
        );
        let measured = &lines[warm_up..];
        let n = measured.len() as f64;
        let mut parts_ms = [0.0; PARTS.len()];
        let mut invocation_ms = 0.0;
        for (line, duration) in measured.iter().zip(durations) {
            let invocation = duration.as_secs_f64() * 1e3;
            invocation_ms += invocation / n;
            let inside = (line.us("decode_us") + line.us("handler_us")) / 1e3;
            parts_ms[0] += (invocation - inside) / n;
            for (part, (_, field)) in parts_ms.iter_mut().zip(PARTS).skip(1) {
                *part += line.us(field) / 1e3 / n;
            }
        }
        CellBudget {
            batches: measured.len(),
            invocation_ms,
            parts_ms,
            round_trips: mean(turns),
        }
    }

    /// The CSV line: memory, round trip and batch size, then `csv_header`'s figures.
    pub fn csv_line(
        &self,
        memory_mb: u32,
        rtt_ms: f64,
        size: usize,
        copy_ms: f64,
        copy_round_trips: f64,
    ) -> String {
        let mut line = format!(
            "{memory_mb},{rtt_ms},{size},{},{:.3}",
            self.batches, self.invocation_ms
        );
        for part in self.parts_ms {
            write!(line, ",{part:.3}").unwrap();
        }
        write!(
            line,
            ",{:.1},{copy_ms:.3},{copy_round_trips:.1}",
            self.round_trips
        )
        .unwrap();
        line
    }
}

pub fn mean(values: &[u64]) -> f64 {
    values.iter().sum::<u64>() as f64 / values.len().max(1) as f64
}
