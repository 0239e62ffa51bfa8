//! The function deployed to LocalStack's own Lambda service (started by `make test` with the
//! project's local runtime executor, localstack/executor), and fed by LocalStack's own SQS event
//! source mapping: what a user's `create-function` and `create-event-source-mapping` make. Both
//! are deleted when dropped, which stops the function's environments (SIGTERM, then SIGKILL).
//!
//! The Lambda API is called over plain HTTP with JSON (reqwest), as the AWS CLI does: no SDK crate
//! is needed for four calls. LocalStack does not check signatures; the Authorization header only
//! names the region and the account.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::localstack::{self, TestQueue};

const AUTHORIZATION: &str = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=0";
/// How long a deployment may take to become active (the first Lambda call loads LocalStack's
/// provider: up to 7 s measured), and an invocation under qemu to answer.
const PATIENCE: Duration = Duration::from_secs(120);

/// What the function runs: the debug build of this workspace, or the zip users deploy.
pub enum Code {
    /// `target/debug/login-etl`, as `bootstrap` in a directory of its own (LocalStack's hot
    /// reloading: `S3Bucket` "hot-reload", `S3Key` the directory). x86_64.
    DebugBinary,
    /// `target/lambda/login-etl/bootstrap.zip` from `make build`: arm64, run through qemu.
    Arm64Zip,
}

/// The zip `make build` writes: what users deploy.
pub fn arm64_zip() -> PathBuf {
    let zip = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/lambda/login-etl/bootstrap.zip");
    assert!(
        zip.exists(),
        "{} is missing: run `make build` (make test does)",
        zip.display()
    );
    zip
}

/// The debug build of the function.
fn debug_binary() -> PathBuf {
    super::built_binary("login-etl", "cargo build --bin login-etl")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap()
}

async fn call(method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = http()
        .request(method, format!("{}{path}", localstack::endpoint()))
        .header("Authorization", AUTHORIZATION);
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    let response = request
        .send()
        .await
        .expect("LocalStack's Lambda API answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A function on LocalStack's Lambda, named `{prefix}-{pid}-{n}`.
pub struct Function {
    pub name: String,
    /// The hot-reload directory holding `bootstrap`, removed on drop.
    code_dir: Option<PathBuf>,
}

/// What the Invoke API answered.
#[derive(Debug)]
pub struct Invocation {
    /// `X-Amz-Function-Error`: set when the function (or its start) failed.
    pub function_error: Option<String>,
    pub payload: Value,
}

impl Function {
    /// Deploys the function with only these variables of ours (RUST_LOG=debug on purpose: even
    /// then no PII may appear, and make test scans the output) and waits until it is active.
    pub async fn deploy(prefix: &str, code: Code, env: &[(&str, &str)]) -> Function {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut variables = serde_json::Map::new();
        variables.insert("RUST_LOG".into(), json!("debug"));
        for (key, value) in env {
            variables.insert((*key).into(), json!(value));
        }
        let (code_json, architecture, code_dir) = match code {
            Code::DebugBinary => {
                let dir = std::env::temp_dir().join(format!("login-etl-code-{name}"));
                std::fs::create_dir_all(&dir).unwrap();
                std::os::unix::fs::symlink(debug_binary(), dir.join("bootstrap")).unwrap();
                let code = json!({"S3Bucket": "hot-reload", "S3Key": dir.to_str().unwrap()});
                (code, "x86_64", Some(dir))
            }
            Code::Arm64Zip => {
                let zip = std::fs::read(arm64_zip()).unwrap();
                let encoded = base64::engine::general_purpose::STANDARD.encode(zip);
                (json!({"ZipFile": encoded}), "arm64", None)
            }
        };
        let (status, answer) = call(
            reqwest::Method::POST,
            "/2015-03-31/functions",
            Some(json!({
                "FunctionName": name,
                "Runtime": "provided.al2023",
                "Handler": "bootstrap",
                "Role": "arn:aws:iam::000000000000:role/login-etl",
                "Architectures": [architecture],
                "Code": code_json,
                // template.yaml's timeout and memory size.
                "Timeout": 30,
                "MemorySize": 512,
                "Environment": {"Variables": variables},
            })),
        )
        .await;
        assert_eq!(status, 201, "CreateFunction {name}: {answer}");
        let function = Function { name, code_dir };
        function.wait_for_state("Active").await;
        function
    }

    async fn wait_for_state(&self, wanted: &str) {
        let started = Instant::now();
        loop {
            let (_, answer) = call(
                reqwest::Method::GET,
                &format!("/2015-03-31/functions/{}", self.name),
                None,
            )
            .await;
            let state = answer["Configuration"]["State"].as_str().unwrap_or("");
            if state == wanted {
                return;
            }
            assert!(
                state != "Failed" && started.elapsed() < PATIENCE,
                "function {} is {state:?}, not {wanted}: {answer}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A synchronous invocation through LocalStack's Invoke API, the event as given (no queue in
    /// between, so its bytes reach the function unchanged).
    pub async fn invoke(&self, event: &str) -> Invocation {
        let response = http()
            .post(format!(
                "{}/2015-03-31/functions/{}/invocations",
                localstack::endpoint(),
                self.name
            ))
            .header("Authorization", AUTHORIZATION)
            .body(event.to_owned())
            .send()
            .await
            .expect("LocalStack's Invoke API answers");
        let function_error = response
            .headers()
            .get("X-Amz-Function-Error")
            .map(|v| v.to_str().unwrap().to_owned());
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "Invoke {}: {status} {text}", self.name);
        Invocation {
            function_error,
            payload: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    /// Invokes once with an empty batch and expects success, so the environment is started (and
    /// its connection made) before any message's visibility timeout starts running.
    pub async fn warm_up(&self) {
        let answer = self.invoke(r#"{"Records":[]}"#).await;
        assert_eq!(
            answer.function_error,
            None,
            "warm-up of {}: {:?}\n{}",
            self.name,
            answer.payload,
            self.log()
        );
    }

    /// Every line the function's environments wrote (the executor copies them to
    /// LOGIN_ETL_LOG_DIR, which make test scans for PII).
    pub fn log(&self) -> String {
        let Some(dir) = std::env::var_os("LOGIN_ETL_LOG_DIR") else {
            return "(LOGIN_ETL_LOG_DIR is not set: make test sets it)".into();
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| {
                let file = path.file_name().unwrap().to_string_lossy();
                file.starts_with(&format!("{}-", self.name)) && file.ends_with(".log")
            })
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The lines of `log` that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|line| line.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let path = format!("/2015-03-31/functions/{}", self.name);
        run_blocking(async move {
            call(reqwest::Method::DELETE, &path, None).await;
        });
        if let Some(dir) = &self.code_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The mapping's settings that tests vary; the rest as template.yaml sets them
/// (ReportBatchItemFailures on).
pub struct MappingSettings {
    pub batch_size: u32,
    pub batching_window_s: u32,
    pub maximum_concurrency: u32,
}

impl Default for MappingSettings {
    fn default() -> Self {
        MappingSettings {
            batch_size: 10,
            batching_window_s: 0,
            maximum_concurrency: 5,
        }
    }
}

/// LocalStack's SQS event source mapping from a queue to a function; deleted when dropped.
pub struct Mapping {
    uuid: String,
}

impl Mapping {
    pub async fn create(
        queue: &TestQueue,
        function: &Function,
        settings: MappingSettings,
    ) -> Mapping {
        let mut body = json!({
            "FunctionName": function.name,
            "EventSourceArn": queue.arn().await,
            "BatchSize": settings.batch_size,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": settings.maximum_concurrency},
        });
        if settings.batching_window_s > 0 {
            body["MaximumBatchingWindowInSeconds"] = json!(settings.batching_window_s);
        }
        let (status, answer) = call(
            reqwest::Method::POST,
            "/2015-03-31/event-source-mappings/",
            Some(body),
        )
        .await;
        assert_eq!(status, 202, "CreateEventSourceMapping: {answer}");
        let mapping = Mapping {
            uuid: answer["UUID"].as_str().unwrap().to_owned(),
        };
        let started = Instant::now();
        loop {
            let (_, answer) = call(
                reqwest::Method::GET,
                &format!("/2015-03-31/event-source-mappings/{}", mapping.uuid),
                None,
            )
            .await;
            if answer["State"] == "Enabled" {
                return mapping;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "mapping not enabled: {answer}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        let path = format!("/2015-03-31/event-source-mappings/{}", self.uuid);
        run_blocking(async move {
            call(reqwest::Method::DELETE, &path, None).await;
        });
    }
}

/// Runs a clean-up call from `drop`, which cannot await: on a thread of its own with a runtime of
/// its own, so it works inside and outside the test's runtime.
fn run_blocking(work: impl std::future::Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work)
    })
    .join();
}
