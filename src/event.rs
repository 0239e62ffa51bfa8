//! The event as the Lambda runtime hands it over: read, and timed for the batch's time budget.
//!
//! lambda_runtime reads every payload through serde_path_to_error, which keeps the path to each
//! value so that an error can say where it is, at a cost on every event (docs/benchmarks.md,
//! "Time budget", has the figures). `Decoded` takes the payload from
//! the runtime as raw JSON, borrowed (one scan, nothing built), reads it plainly, and only when
//! that fails reads it once more with the path kept, so the error still names the field.

use std::time::{Duration, Instant};

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// An event, and how long reading it from its JSON took (the runtime reads the event before the
/// handler runs, so the handler cannot time it).
pub struct Decoded<T> {
    pub value: T,
    pub took: Duration,
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Decoded<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let started = Instant::now();
        let raw = <&'de RawValue>::deserialize(deserializer)?;
        let value = read(raw.get()).map_err(D::Error::custom)?;
        Ok(Decoded {
            value,
            took: started.elapsed(),
        })
    }
}

/// `json` as a `T`, or what is wrong and where, without the value: `[Records] a value of the
/// wrong type at line 1 column 14`.
fn read<T: DeserializeOwned>(json: &str) -> Result<T, String> {
    serde_json::from_str(json).map_err(|plain| {
        let tracked = &mut serde_json::Deserializer::from_str(json);
        match serde_path_to_error::deserialize::<_, T>(tracked) {
            Err(e) => format!("[{}] {}", e.path(), without_values(e.inner())),
            // Not expected: both read the same text with the same rules.
            Ok(_) => without_values(&plain),
        }
    })
}

/// serde_json's message, unless it quotes the input: serde's type and value errors do (`invalid
/// type: string "203.0.113.7 ...", expected struct LeanSqsEvent`), and the runtime logs the error
/// and returns it to the invoker. The others (syntax, missing fields, record.rs's own) name none.
fn without_values(error: &serde_json::Error) -> String {
    let message = error.to_string();
    if message.starts_with("invalid type") || message.starts_with("invalid value") {
        format!(
            "a value of the wrong type at line {} column {}",
            error.line(),
            error.column()
        )
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use login_etl_core::record::LeanSqsEvent;

    /// What lambda_runtime does with the payload (its `deserializer::deserialize`).
    fn as_the_runtime_reads<T: DeserializeOwned>(
        json: &str,
    ) -> Result<T, serde_path_to_error::Error<serde_json::Error>> {
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(json.as_bytes()))
    }

    #[test]
    fn reads_the_event_the_runtime_hands_over_and_times_it() {
        let json = r#"{"Records": [{"messageId": "m1", "body": "{}", "attributes": {"ApproximateReceiveCount": "1"}}]}"#;
        let decoded: Decoded<LeanSqsEvent> = as_the_runtime_reads(json).unwrap();
        assert_eq!(decoded.value.records.len(), 1);
        assert!(decoded.took < Duration::from_secs(1));
    }

    /// Why the runtime would refuse `json` as the function's payload.
    fn refusal(json: &str) -> String {
        as_the_runtime_reads::<Decoded<LeanSqsEvent>>(json)
            .err()
            .expect("refused")
            .to_string()
    }

    #[test]
    fn an_event_of_the_wrong_shape_is_refused_with_the_path_to_what_is_wrong() {
        // A record of the wrong shape fails alone (record.rs); only the event's own shape fails
        // the read.
        let error = refusal(r#"{"Records": 7}"#);
        assert!(error.contains("[Records]"), "{error}");
        let error = refusal(r#"{"records": []}"#);
        assert!(error.contains("missing field `Records`"), "{error}");
    }

    #[test]
    fn a_refusal_quotes_no_value_of_the_event() {
        let error = refusal(r#""203.0.113.7 device-4417""#);
        assert!(error.contains("a value of the wrong type"), "{error}");
        assert!(!error.contains("203.0.113.7"), "{error}");
        assert!(!error.contains("4417"), "{error}");
    }

    #[test]
    fn broken_json_is_refused() {
        let error = refusal(r#"{"Records": [{"#);
        assert!(error.contains("EOF"), "{error}");
    }
}
