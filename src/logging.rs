//! Log set-up for the function: Lambda's advanced logging controls (`AWS_LAMBDA_LOG_FORMAT=JSON`,
//! `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`), with the database driver held at INFO.
//!
//! Why the driver is held: at DEBUG, tokio-postgres logs every statement *with its parameters*,
//! which are our rows, so one `RUST_LOG=debug` would put user ids into CloudWatch. The directive
//! is added last, so no environment setting can lower it.

use tracing_subscriber::filter::{EnvFilter, LevelFilter};

/// Crates whose DEBUG output would include row values.
const HELD_AT_INFO: &[&str] = &["tokio_postgres=info", "postgres_protocol=info"];

/// The filter the function logs with, from the level setting (`None`: INFO).
pub fn filter(level_setting: Option<&str>) -> EnvFilter {
    let mut filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse_lossy(level_setting.unwrap_or("info"));
    for directive in HELD_AT_INFO {
        filter = filter.add_directive(directive.parse().expect("static directive parses"));
    }
    filter
}

/// Installs the global subscriber, writing to stdout as Lambda expects.
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(level.as_deref()))
        .with_target(false)
        .without_time() // CloudWatch stamps every line itself
        .with_ansi(false);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_driver_never_logs_below_info() {
        for setting in [
            "debug",
            "trace",
            "tokio_postgres=trace",
            "login_etl=debug,tokio_postgres=debug",
        ] {
            let text = filter(Some(setting)).to_string();
            assert!(text.contains("tokio_postgres=info"), "{setting}: {text}");
            assert!(
                !text.contains("tokio_postgres=debug") && !text.contains("tokio_postgres=trace"),
                "{text}"
            );
        }
    }
}
