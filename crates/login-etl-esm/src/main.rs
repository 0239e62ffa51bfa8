//! `login-etl-esm`: the SQS event source mapping, locally (see the library `login_etl_esm` and docs/ESM.md).

use std::process::ExitCode;

use clap::Parser;
use login_etl_esm::mapping::Mapping;
use login_etl_esm::options::Options;
use login_etl_esm::stop::Stop;

#[tokio::main]
async fn main() -> ExitCode {
    let options = Options::parse();
    init_logging();
    let stop = match Stop::on_signals() {
        Ok(stop) => stop,
        Err(error) => {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            return ExitCode::FAILURE;
        }
    };
    match Mapping::start(&options).await {
        Ok(mapping) => {
            mapping.run(stop).await;
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "login-etl-esm could not start");
            ExitCode::FAILURE
        }
    }
}

/// Timestamped lines on stderr; RUST_LOG as usual (DEBUG adds each batch's messageIds), with the
/// function's filter: the SQS client below INFO would log message bodies.
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let level = std::env::var("RUST_LOG").ok();
    let format = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::io::stderr);
    tracing_subscriber::registry()
        .with(format.with_filter(login_etl::logging::filter_for(
            "login_etl_esm",
            level.as_deref(),
        )))
        .init();
}
