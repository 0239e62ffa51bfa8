//! The Lambda entry point: read the configuration, connect, check the schema, serve batches,
//! and on Lambda's SIGTERM drain the invocations in flight and close the database connections.
//! A start that fails is reported to the Runtime API (`/runtime/init/error`), as Lambda's own
//! runtimes do, so the invoker sees the reason and not a bare exit.

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{service_fn, LambdaEvent};
use login_etl::config::{self, Config};
use login_etl::config_error::ConfigError;
use login_etl::event::Decoded;
use login_etl::handler::{HandlerError, Processor};
use login_etl::secrets;
use login_etl::shutdown::{self, Lifecycle};
use login_etl::store::{Store, StoreError, StoreOptions};
use login_etl_core::metrics::Emf;
use login_etl_core::record::LeanSqsEvent;
use tokio::time::Instant;

/// Lambda allows 10 s of init; the connect and migrations must fit in it.
const INIT_BUDGET: Duration = Duration::from_secs(8);

/// How long reporting a failed start may take: the Runtime API is local.
const INIT_ERROR_TIMEOUT: Duration = Duration::from_secs(2);

fn main() -> Result<(), lambda_runtime::Error> {
    login_etl::logging::init();
    let max_concurrency = config::max_concurrency(&environment);
    // One thread serves one invocation at a time (classic Lambda). An environment of Lambda
    // Managed Instances serves several at once and has the vCPUs for them: parsing and masking
    // then run in parallel.
    let runtime = if max_concurrency.as_ref().is_ok_and(|&n| n > 1) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    }
    .enable_all()
    .build()?;
    runtime.block_on(async {
        if let Err(error) = max_concurrency {
            return Err(init_failed(error.into()).await);
        }
        serve().await
    })
}

fn environment(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

async fn serve() -> Result<(), lambda_runtime::Error> {
    let processor = match start().await {
        Ok(processor) => Arc::new(processor),
        Err(error) => return Err(init_failed(error).await),
    };
    let lifecycle = Arc::new(Lifecycle::default());
    // The extension must be registered before the first `next` ends the init phase.
    if shutdown::register().await {
        tokio::spawn(on_sigterm(Arc::clone(&processor), Arc::clone(&lifecycle)));
    }
    // With AWS_LAMBDA_MAX_CONCURRENCY above 1, as many invocations run at once, each on a
    // connection of its own; without it, one at a time.
    lambda_runtime::run_concurrent(service_fn(
        move |event: LambdaEvent<Decoded<LeanSqsEvent>>| {
            let processor = Arc::clone(&processor);
            let lifecycle = Arc::clone(&lifecycle);
            async move {
                let Some(_in_flight) = lifecycle.begin() else {
                    return Err(HandlerError::ShuttingDown);
                };
                // An invocation still running when the drain is over gives up: its batch comes back
                // whole (rows it committed come back as duplicates), and it answers before the kill.
                tokio::select! {
                    answer = processor.handle(event) => answer,
                    () = lifecycle.given_up() => Err(HandlerError::ShuttingDown),
                }
            }
        },
    ))
    .await
}

/// Lambda's SIGTERM: drain within the time Lambda gives before SIGKILL (`shutdown::BUDGET`),
/// close every connection, exit.
async fn on_sigterm(processor: Arc<Processor>, lifecycle: Arc<Lifecycle>) {
    let Ok(mut sigterm) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        tracing::warn!("cannot listen for SIGTERM; the function runs without shutdown handling");
        return;
    };
    sigterm.recv().await;
    let started = Instant::now();
    let (answered, gave_up) = lifecycle.drain().await;
    // The connections of invocations that gave up were dropped with them; the rest are idle now.
    processor.close().await;
    tracing::info!(
        answered,
        gave_up,
        shutdown_ms = started.elapsed().as_millis() as u64,
        "shut down on SIGTERM"
    );
    std::process::exit(0);
}

/// Reads the configuration (with `SECRET_ARN` and `DATABASE_SECRET_ARN`, the secrets), connects,
/// checks the schema.
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
    let database = match settings.credentials_source() {
        Some(source) => config.database.with_credentials_source(source),
        None => config.database,
    };
    let store = Store::connect(database, options, deadline).await?;
    let emf = Emf {
        namespace: config.metrics_namespace,
        function_name: std::env::var("AWS_LAMBDA_FUNCTION_NAME")
            .unwrap_or_else(|_| "login-etl".into()),
    };
    Ok(Processor::new(config.masker, store)
        .with_metrics(emf)
        .with_retain_days(config.retain_days))
}

/// Logs why the function could not start and reports it to the Runtime API's
/// `/runtime/init/error`, so that the invoker gets the reason. Init errors say what to fix and
/// hold no value: they name the variable, the secret's field, the host (no batch has been read).
async fn init_failed(error: lambda_runtime::Error) -> lambda_runtime::Error {
    tracing::error!(%error, "login-etl could not start");
    let error_type = init_error_type(&error);
    let message = error.to_string();
    let report = report_init_error(error_type, &message);
    match tokio::time::timeout(INIT_ERROR_TIMEOUT, report).await {
        Ok(Ok(())) => {}
        Ok(Err(why)) => {
            tracing::warn!(%why, "could not report the start-up failure to the Runtime API")
        }
        Err(_) => tracing::warn!("the Runtime API did not take the start-up failure in time"),
    }
    error
}

/// The `errorType` of a failed start: what kind of thing to fix.
fn init_error_type(error: &lambda_runtime::Error) -> &'static str {
    if error.downcast_ref::<ConfigError>().is_some() {
        return "Runtime.InvalidConfiguration";
    }
    match error.downcast_ref::<StoreError>() {
        Some(StoreError::Unavailable(_)) => "Runtime.DatabaseUnavailable",
        Some(StoreError::Schema(_)) => "Runtime.DatabaseSchema",
        Some(StoreError::Tls(_)) => "Runtime.DatabaseTls",
        Some(StoreError::Database(_)) => "Runtime.DatabaseError",
        None => "Runtime.InitError",
    }
}

/// POSTs `{"errorType", "errorMessage"}` to `/runtime/init/error`.
async fn report_init_error(error_type: &str, message: &str) -> Result<(), lambda_runtime::Error> {
    use lambda_runtime_api_client::body::Body;
    // Run by hand, outside Lambda, there is no Runtime API to tell (the client would panic).
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        return Err("AWS_LAMBDA_RUNTIME_API is not set (not running in Lambda)".into());
    }
    let client = lambda_runtime_api_client::Client::builder().build()?;
    let body = serde_json::json!({ "errorType": error_type, "errorMessage": message });
    let request = lambda_runtime_api_client::build_request()
        .method("POST")
        .uri("/2018-06-01/runtime/init/error")
        .header("Lambda-Runtime-Function-Error-Type", error_type)
        .header("Content-Type", "application/json")
        .body(Body::from(body.to_string()))?;
    let response = client.call(request).await?;
    if !response.status().is_success() {
        return Err(format!("the Runtime API answered {}", response.status()).into());
    }
    Ok(())
}
