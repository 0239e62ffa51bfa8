//! The Lambda entry point: read the configuration, connect, check the schema, serve batches.

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{service_fn, LambdaEvent};
use login_etl::config::Config;
use login_etl::handler::Processor;
use login_etl::metrics::Emf;
use login_etl::store::{Store, StoreOptions};
use tokio::time::Instant;

/// Lambda allows 10 s of init; the connect and migrations must fit in it.
const INIT_BUDGET: Duration = Duration::from_secs(8);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    login_etl::logging::init();
    let processor = match start().await {
        Ok(processor) => processor,
        Err(error) => {
            // Init errors must say what to fix; they never hold PII (no batch has been read).
            tracing::error!(%error, "login-etl could not start");
            return Err(error);
        }
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        processor.handle(event)
    }))
    .await
}

async fn start() -> Result<Processor, lambda_runtime::Error> {
    let config = Config::from_env()?;
    let deadline = Instant::now() + INIT_BUDGET;
    let options = StoreOptions {
        with_vault: config.masker.recovery_key_id().is_some(),
        migrate: config.auto_migrate,
        statement_mode: config.statement_mode,
    };
    let store = Store::connect(config.database, options, deadline).await?;
    let emf = Emf {
        namespace: config.metrics_namespace,
        function_name: std::env::var("AWS_LAMBDA_FUNCTION_NAME")
            .unwrap_or_else(|_| "login-etl".into()),
    };
    Ok(Processor::new(config.masker, store).with_metrics(emf))
}
