//! Log set-up for the function: Lambda's advanced logging controls (`AWS_LAMBDA_LOG_FORMAT=JSON`,
//! `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`), with every other crate held at INFO.
//!
//! Why the other crates are held: below INFO they log what passes through them, and that is our
//! input. lambda_runtime logs every raw event at TRACE (ip and device_id in clear), tokio-postgres
//! logs every statement with its parameters (our rows) at DEBUG, and the HTTP stack below the
//! runtime logs what it reads. So only our own crates' events may go below INFO; no setting
//! (`trace`, `lambda_runtime=trace`, a span filter) can lower the cap. Our own events never
//! carry a value, at any level: they name the messageId, the field and the rule.

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt, LevelFilter};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The targets of our own events: this crate (the library and its binary), the pure core, and
/// the operator's PII tool. Not the other tools (`login_etl_dlq`): their own binaries pick their
/// target with `filter_for`.
const OWN_TARGETS: &[&str] = &["login_etl", "login_etl_core", "login_etl_pii"];

/// The most verbose level any other crate may log at.
const OTHER_CRATES_AT_MOST: Level = Level::INFO;

/// The filter the function logs with: the level setting (`None`: INFO), and whatever it says,
/// nothing below INFO from any crate but ours.
pub fn filter<S>(level_setting: Option<&str>) -> impl Filter<S> + Send + Sync + 'static
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    filter_for(OWN_TARGETS, level_setting)
}

/// `filter` for a program whose own events have the targets `own` (other crates of this
/// workspace, whose events carry no values either).
pub fn filter_for<S>(
    own: &'static [&'static str],
    level_setting: Option<&str>,
) -> impl Filter<S> + Send + Sync + 'static
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let setting = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse_lossy(level_setting.unwrap_or("info"));
    // Own events carry no values at any level; another crate's only down to INFO.
    setting.and(filter_fn(move |metadata: &Metadata<'_>| {
        own.iter().any(|own| is_of(own, metadata.target()))
            || *metadata.level() <= OTHER_CRATES_AT_MOST
    }))
}

fn is_of(own: &str, target: &str) -> bool {
    target
        .strip_prefix(own)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

/// The level and format Lambda's advanced logging controls (or `RUST_LOG`) ask for.
pub struct LogSettings {
    pub level: Option<String>,
    pub json: bool,
}

impl LogSettings {
    pub fn from_env() -> Self {
        let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
            .or_else(|_| std::env::var("RUST_LOG"))
            .ok();
        let json =
            std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
        LogSettings { level, json }
    }
}

/// Installs the global subscriber, writing to stdout as Lambda expects.
pub fn init() {
    install(&LogSettings::from_env(), std::io::stdout);
}

/// Installs the global subscriber with `settings`, writing to `writer` (tests capture the
/// function's logs through the very same filter); false if one was installed already.
pub fn install<W>(settings: &LogSettings, writer: W) -> bool
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::registry()
        .with(layer(settings, writer))
        .try_init()
        .is_ok()
}

/// The formatting layer with the function's filter, in text or JSON.
pub fn layer<S, W>(settings: &LogSettings, writer: W) -> Box<dyn Layer<S> + Send + Sync + 'static>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let format = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time() // CloudWatch stamps every line itself
        .with_ansi(false)
        .with_writer(writer);
    let filter = filter(settings.level.as_deref());
    if settings.json {
        format.json().with_filter(filter).boxed()
    } else {
        format.with_filter(filter).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// What the function's subscriber writes while `emit` runs, with `level` as the setting.
    fn logged(level: &str, json: bool, emit: impl FnOnce()) -> String {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let buffer = buffer.clone();
            move || SharedWriter(buffer.clone())
        };
        let settings = LogSettings {
            level: Some(level.into()),
            json,
        };
        let subscriber = tracing_subscriber::registry().with(layer(&settings, writer));
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = buffer.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    struct SharedWriter(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for SharedWriter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn no_other_crate_logs_below_info_whatever_the_setting() {
        for setting in [
            "trace",
            "debug",
            "TRACE",
            "lambda_runtime=trace",
            "tokio_postgres=trace,postgres_protocol=trace",
            "login_etl=debug,tokio_postgres=debug",
            "[{body}]=trace",
        ] {
            for json in [false, true] {
                let text = logged(setting, json, || {
                    tracing::trace!(target: "lambda_runtime::layers::api_response", body = "raw-event", "raw JSON event received from Lambda");
                    tracing::debug!(target: "tokio_postgres::query", "executing statement with parameters [raw-row]");
                    tracing::trace!(target: "hyper_util::client", "raw-bytes");
                    tracing::info!(target: "lambda_runtime", "runtime-info");
                });
                assert!(!text.contains("raw-"), "{setting} (json {json}): {text}");
                // A bare level lets everyone's INFO through; `crate=level` only that crate's.
                if !setting.contains('=') {
                    assert!(
                        text.contains("runtime-info"),
                        "{setting} (json {json}): {text}"
                    );
                }
            }
        }
    }

    #[test]
    fn this_crate_logs_at_the_level_asked_for() {
        let text = logged("trace", true, || {
            tracing::trace!(target: "login_etl::store", "own-trace");
            tracing::debug!(target: "login_etl", "own-debug");
            tracing::trace!(target: "login_etl_core::batch", "core-trace");
            tracing::debug!(target: "login_etl_pii::recovery", "pii-debug");
            tracing::trace!(target: "login_etl_dlq", "not-ours");
        });
        assert!(
            text.contains("own-trace") && text.contains("own-debug"),
            "{text}"
        );
        assert!(
            text.contains("core-trace") && text.contains("pii-debug"),
            "{text}"
        );
        assert!(!text.contains("not-ours"), "{text}");
        let quiet = logged("info", false, || {
            tracing::debug!(target: "login_etl::store", "own-debug");
        });
        assert!(quiet.is_empty(), "{quiet}");
    }
}
