//! The real release binary under a stub of the Lambda Runtime API: cold start, peak RSS, size.
//!
//! Cold start is the time from spawning the process to its first `GET .../invocation/next`,
//! which the runtime sends once `main` has read the configuration, built the masker, connected,
//! prepared its statements, checked the schema, registered its shutdown extension and started
//! the runtime client: the moment Lambda would consider init done. Two estimates of the part before connecting: the connect and prepare to the local
//! server measured on their own in this process and subtracted; and the time until the binary
//! exits when the database port refuses the connection (an upper bound: it includes building
//! the TLS connector, the refused connect, the error log line and the process exit).
//! Peak RSS is `VmHWM` of the function's process after it answered one 5,000-record batch.

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::SqsEvent;
use login_etl::config::DatabaseConfig;
use login_etl::store::{Store, StoreOptions};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_postgres::Client;

use crate::{median, peak_rss_mib, workload};

const BINARY: &str = env!("CARGO_BIN_EXE_login-etl");
const COLD_STARTS: usize = 15;
const RSS_BATCH: usize = 5_000;
const NEXT: &str = "/2018-06-01/runtime/invocation/next";

pub async fn report(admin: &Client, url: &str, config: DatabaseConfig) {
    let size_mib = std::fs::metadata(BINARY).map_or(f64::NAN, |m| m.len() as f64 / 1048576.0);
    println!(
        "\nLambda binary: {BINARY} ({size_mib:.2} MiB, stripped; x86_64 glibc, not the arm64 zip)"
    );

    let mut connect_ms: Vec<f64> = Vec::new();
    for _ in 0..COLD_STARTS {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(10);
        Store::connect(config.clone(), StoreOptions::default(), deadline)
            .await
            .unwrap();
        connect_ms.push(started.elapsed().as_secs_f64() * 1e3);
    }

    let mut cold_ms: Vec<f64> = Vec::new();
    let mut idle_rss: Vec<f64> = Vec::new();
    for _ in 0..COLD_STARTS {
        let function = Function::start(url).await;
        cold_ms.push(function.cold_start.as_secs_f64() * 1e3);
        idle_rss.push(peak_rss_mib(&function.pid()));
        function.stop().await;
    }

    admin
        .batch_execute("TRUNCATE user_logins")
        .await
        .expect("truncate");
    let mut function = Function::start(url).await;
    let mut event = SqsEvent::default();
    event.records = workload::records(7, RSS_BATCH);
    let body = serde_json::to_vec(&event).unwrap();
    let started = Instant::now();
    let answer = function.invoke(&body).await;
    let invoke_ms = started.elapsed().as_secs_f64() * 1e3;
    let batch_rss = peak_rss_mib(&function.pid());
    function.stop().await;
    let failures = serde_json::from_slice::<serde_json::Value>(&answer)
        .ok()
        .and_then(|v| v["batchItemFailures"].as_array().map(Vec::len));
    let stored: i64 = admin
        .query_one("SELECT count(*) FROM user_logins", &[])
        .await
        .unwrap()
        .get(0);

    let mut refused_ms: Vec<f64> = Vec::new();
    for _ in 0..COLD_STARTS {
        refused_ms.push(Function::time_to_refused_exit().await.as_secs_f64() * 1e3);
    }

    let cold = median(&mut cold_ms);
    let connect = median(&mut connect_ms);
    println!("| measure | median of {COLD_STARTS} |");
    println!("| --- | ---: |");
    println!(
        "| cold start: spawn -> first GET /next (includes connect + prepare) | {cold:.1} ms |"
    );
    println!("| connect + prepare alone (measured in-process, same server) | {connect:.1} ms |");
    println!(
        "| cold start before connecting (difference) | {:.1} ms |",
        cold - connect
    );
    println!(
        "| spawn -> exit when the database refuses the connection (upper bound) | {:.1} ms |",
        median(&mut refused_ms)
    );
    println!(
        "| peak RSS when ready (VmHWM) | {:.1} MiB |",
        median(&mut idle_rss)
    );
    println!("| peak RSS after one {RSS_BATCH}-record batch (VmHWM, 1 run) | {batch_rss:.1} MiB |");
    println!(
        "| that batch: invoke -> response | {invoke_ms:.0} ms ({stored} rows stored, {} failures reported) |",
        failures.map_or("?".to_string(), |n| n.to_string())
    );
}

/// One execution environment: the binary, talking to our stub of the Runtime API.
struct Function {
    child: Child,
    /// The requests on connections other than `waiting` (see `serve_connections`).
    requests: mpsc::Receiver<Request>,
    /// The runtime's connection, parked on its `GET /next`.
    waiting: BufReader<TcpStream>,
    cold_start: Duration,
}

/// A request of the function's runtime client, and the connection to answer it on.
type Request = (String, String, Vec<u8>, BufReader<TcpStream>);

const EXTENSION_REGISTER: &str = "/2020-01-01/extension/register";
const EXTENSION_NEXT: &str = "/2020-01-01/extension/event/next";

/// Accepts the function's connections and plays the Extensions API as Lambda does for the
/// graceful-shutdown extension the function registers at init: the registration is answered,
/// the extension's `event/next` is never (Lambda answers it with SHUTDOWN). Every other request
/// is passed on, with its connection.
fn serve_connections(listener: TcpListener) -> mpsc::Receiver<Request> {
    let (sender, receiver) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let sender = sender.clone();
            tokio::spawn(async move {
                let mut connection = BufReader::new(stream);
                loop {
                    let (method, path, body) = read_request(&mut connection).await;
                    match path.as_str() {
                        // The client closed the connection.
                        "" => return,
                        EXTENSION_REGISTER => {
                            let answer = r#"{"functionName":"login-etl","functionVersion":"$LATEST","handler":"bootstrap"}"#;
                            let head = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                 lambda-extension-identifier: bench-extension\r\n\
                                 content-length: {}\r\n\r\n",
                                answer.len()
                            );
                            let stream = connection.get_mut();
                            stream.write_all(head.as_bytes()).await.unwrap();
                            stream.write_all(answer.as_bytes()).await.unwrap();
                        }
                        EXTENSION_NEXT => std::future::pending::<()>().await,
                        _ => {
                            let _ = sender.send((method, path, body, connection)).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    receiver
}

impl Function {
    async fn start(url: &str) -> Function {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = listener.local_addr().unwrap().to_string();
        let log = std::env::temp_dir().join(format!("login-etl-bench-{}.log", std::process::id()));
        let spawned = Instant::now();
        let mut child = Command::new(BINARY)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", &api)
            .env("AWS_LAMBDA_FUNCTION_NAME", "login-etl")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("DATABASE_URL", url)
            .env("MASKING_KEY", workload::MASKING_KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the login-etl binary");
        let mut requests = serve_connections(listener);
        let first = tokio::select! {
            first = timeout(Duration::from_secs(30), requests.recv()) => first,
            status = child.wait() => panic!(
                "login-etl exited during init ({status:?}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        };
        let (_, path, _, waiting) = first
            .expect("login-etl polled the Runtime API within 30 s")
            .unwrap();
        let cold_start = spawned.elapsed();
        assert_eq!(path, NEXT, "the runtime's first request");
        Function {
            child,
            requests,
            waiting,
            cold_start,
        }
    }

    /// Spawn to exit, with DATABASE_URL on a loopback port where nothing listens.
    async fn time_to_refused_exit() -> Duration {
        let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(); // the listener is dropped here: the port refuses connections
        let spawned = Instant::now();
        let status = Command::new(BINARY)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
            .env("AWS_LAMBDA_FUNCTION_NAME", "login-etl")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "DATABASE_URL",
                format!("postgres://etl@127.0.0.1:{closed_port}/etl?sslmode=disable"),
            )
            .env("MASKING_KEY", workload::MASKING_KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .expect("run the login-etl binary");
        let elapsed = spawned.elapsed();
        assert!(!status.success(), "login-etl must fail without a database");
        elapsed
    }

    fn pid(&self) -> String {
        self.child.id().expect("running").to_string()
    }

    /// Answers the parked `GET /next` with `event` and returns the function's response body.
    async fn invoke(&mut self, event: &[u8]) -> Vec<u8> {
        let deadline_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis()
            + 60_000;
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
             lambda-runtime-aws-request-id: bench-1\r\n\
             lambda-runtime-deadline-ms: {deadline_ms}\r\n\
             lambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:000000000000:function:login-etl\r\n\
             lambda-runtime-trace-id: Root=1-00000000-000000000000000000000000\r\n\
             content-length: {}\r\n\r\n",
            event.len()
        );
        let stream = self.waiting.get_mut();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(event).await.unwrap();
        // The response may come on this connection or a new one (hyper's pool decides).
        let (method, path, body) = tokio::select! {
            request = read_request(&mut self.waiting) => request,
            Some((method, path, body, connection)) = self.requests.recv() => {
                self.waiting = connection;
                (method, path, body)
            }
        };
        let stream = self.waiting.get_mut();
        stream
            .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}")
            .await
            .unwrap();
        match (method.as_str(), path.as_str()) {
            ("POST", "/2018-06-01/runtime/invocation/bench-1/response") => body,
            ("POST", _) => panic!(
                "login-etl reported an error on {path}: {}",
                String::from_utf8_lossy(&body)
            ),
            _ => panic!("unexpected {method} {path} before the response"),
        }
    }

    async fn stop(mut self) {
        self.child.start_kill().ok();
        self.child.wait().await.ok();
    }
}

/// Reads one HTTP/1.1 request: method, path, body (Content-Length or chunked).
async fn read_request(stream: &mut BufReader<TcpStream>) -> (String, String, Vec<u8>) {
    let mut line = String::new();
    stream.read_line(&mut line).await.unwrap();
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut length = 0;
    let mut chunked = false;
    loop {
        line.clear();
        stream.read_line(&mut line).await.unwrap();
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().unwrap();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            stream.read_line(&mut line).await.unwrap();
            let size = usize::from_str_radix(line.trim(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            stream.read_exact(&mut chunk).await.unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(length, 0);
        stream.read_exact(&mut body).await.unwrap();
    }
    (method, path, body)
}
