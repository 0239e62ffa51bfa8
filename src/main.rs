//! The Lambda entry point: read the configuration, connect, check the schema, serve batches,
//! and close the database connections when Lambda shuts the environment down.

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{service_fn, LambdaEvent};
use login_etl::config::{self, Config};
use login_etl::handler::Processor;
use login_etl::secrets;
use login_etl::store::{Store, StoreOptions};
use login_etl_core::metrics::Emf;
use login_etl_core::record::LoginEvents;
use tokio::time::Instant;

/// Lambda allows 10 s of init; the connect and migrations must fit in it.
const INIT_BUDGET: Duration = Duration::from_secs(8);

fn main() -> Result<(), lambda_runtime::Error> {
    login_etl::logging::init();
    let max_concurrency = match config::max_concurrency(&environment) {
        Ok(n) => n,
        Err(error) => return Err(init_failed(error.into())),
    };
    // One thread serves one invocation at a time (classic Lambda). An environment of Lambda
    // Managed Instances serves several at once and has the vCPUs for them: parsing and masking
    // then run in parallel.
    let runtime = if max_concurrency > 1 {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    }
    .enable_all()
    .build()?;
    runtime.block_on(serve())
}

fn environment(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

async fn serve() -> Result<(), lambda_runtime::Error> {
    let processor = match start().await {
        Ok(processor) => Arc::new(processor),
        Err(error) => return Err(init_failed(error)),
    };
    // Lambda sends SIGTERM before it ends the environment (the hook registers the extension that
    // asks for it). Closing the connections then ends their server backends at once; otherwise
    // each stays until the server notices the socket is gone.
    let closing = Arc::clone(&processor);
    lambda_runtime::spawn_graceful_shutdown_handler(|| async move { closing.close().await }).await;
    // With AWS_LAMBDA_MAX_CONCURRENCY above 1, as many invocations run at once, each on a
    // connection of its own; without it, one at a time.
    lambda_runtime::run_concurrent(service_fn(move |event: LambdaEvent<LoginEvents>| {
        let processor = Arc::clone(&processor);
        async move { processor.handle(event).await }
    }))
    .await
}

/// Reads the configuration (with `SECRET_ARN`, the secret, once), connects, checks the schema.
async fn start() -> Result<Processor, lambda_runtime::Error> {
    let deadline = Instant::now() + INIT_BUDGET;
    let settings = secrets::settings(environment).await?;
    let config = Config::from_lookup(|name| settings.get(name))?;
    let options = StoreOptions {
        with_vault: config.masker.recovery_key_id().is_some(),
        migrate: config.auto_migrate,
        statement_mode: config.statement_mode,
        max_connections: config.max_concurrency,
    };
    let store = Store::connect(config.database, options, deadline).await?;
    let emf = Emf {
        namespace: config.metrics_namespace,
        function_name: std::env::var("AWS_LAMBDA_FUNCTION_NAME")
            .unwrap_or_else(|_| "login-etl".into()),
    };
    Ok(Processor::new(config.masker, store).with_metrics(emf))
}

/// Logs why the function could not start. Init errors must say what to fix; they never hold PII
/// (no batch has been read).
fn init_failed(error: lambda_runtime::Error) -> lambda_runtime::Error {
    tracing::error!(%error, "login-etl could not start");
    error
}
