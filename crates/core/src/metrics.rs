//! One CloudWatch Embedded Metric Format (EMF) line per batch: CloudWatch turns the counts into
//! metrics without any API call from the function (and without any per-record data).

use serde_json::json;

use crate::batch::BatchOutcome;

/// Where the metrics go: the namespace (`METRICS_NAMESPACE`) and the function-name dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emf {
    pub namespace: String,
    pub function_name: String,
}

impl Emf {
    /// The EMF document for one batch, as a single JSON line.
    pub fn line(&self, outcome: &BatchOutcome, duration_ms: f64, timestamp_ms: u64) -> String {
        let counts = [
            ("Received", outcome.received),
            ("Stored", outcome.stored),
            ("Duplicates", outcome.duplicates),
            ("Invalid", outcome.invalid),
            ("HeldBack", outcome.held_back),
            ("Failed", outcome.failed),
        ];
        let mut definitions: Vec<_> = counts
            .iter()
            .map(|(name, _)| json!({"Name": name, "Unit": "Count"}))
            .collect();
        definitions.push(json!({"Name": "DurationMs", "Unit": "Milliseconds"}));
        let mut document = json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [["FunctionName"]],
                    "Metrics": definitions,
                }],
            },
            "FunctionName": self.function_name,
            "DurationMs": duration_ms,
        });
        for (name, value) in counts {
            document[name] = json!(value);
        }
        document.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_emf_document_cloudwatch_accepts() {
        let emf = Emf {
            namespace: "LoginEtl".into(),
            function_name: "login-etl".into(),
        };
        let outcome = BatchOutcome {
            received: 10,
            stored: 7,
            duplicates: 1,
            invalid: 1,
            held_back: 0,
            failed: 1,
            failures: vec![],
        };
        let line = emf.line(&outcome, 12.5, 1_700_000_000_000);
        assert!(!line.contains('\n'));
        let doc: serde_json::Value = serde_json::from_str(&line).unwrap();
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000u64);
        assert_eq!(directive["Namespace"], "LoginEtl");
        assert_eq!(directive["Dimensions"], json!([["FunctionName"]]));
        // Every declared metric has its value at the top level, as EMF requires.
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(doc[name].is_number(), "{name} has no value");
        }
        assert_eq!(
            (
                doc["Received"].as_u64(),
                doc["Stored"].as_u64(),
                doc["Failed"].as_u64()
            ),
            (Some(10), Some(7), Some(1))
        );
        assert_eq!(doc["FunctionName"], "login-etl");
    }
}
