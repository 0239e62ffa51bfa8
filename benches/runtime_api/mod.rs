//! A stand-in for the Lambda Runtime API on loopback, driving one function process the way
//! Lambda drives an execution environment: it answers the function's `GET .../invocation/next`
//! with an event, times the invocation up to the `POST .../response` (or `.../error`), and
//! reports an init failure (`POST .../runtime/init/error`, or the process exiting) as such.
//!
//! It plays the Extensions API only as far as the function's graceful-shutdown extension needs:
//! the registration is answered and its `event/next` is never (Lambda answers it with SHUTDOWN).
//! Any runtime client works: requests may come on any connection, kept alive or not.
//!
//! ```ignore
//! let mut command = runtime_api::lambda_command(binary, 256);
//! command.env("DATABASE_URL", url);
//! let mut function = runtime_api::Function::start(command, Duration::from_secs(30)).await?;
//! let invocation = function.invoke(&event_json, Duration::from_secs(30)).await;
//! function.stop().await;
//! ```
#![allow(dead_code)] // each benchmark uses a different part of this module

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant};

const NEXT: &str = "/2018-06-01/runtime/invocation/next";
const INIT_ERROR: &str = "/2018-06-01/runtime/init/error";
const EXTENSION_REGISTER: &str = "/2020-01-01/extension/register";
const EXTENSION_NEXT: &str = "/2020-01-01/extension/event/next";
const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:login-etl";

/// A command with the environment Lambda gives every function (and nothing else of ours):
/// the function's name, version and memory size. `Function::start` adds the Runtime API's
/// address; the caller adds the function's own settings.
pub fn lambda_command(program: impl AsRef<std::ffi::OsStr>, memory_mb: u32) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("AWS_LAMBDA_FUNCTION_NAME", "login-etl")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string())
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_REGION", "us-east-1")
        .env("TZ", ":UTC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

/// One HTTP request of the function, and where its answer goes.
struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
    /// The whole HTTP response to send back on the request's connection.
    answer: oneshot::Sender<Vec<u8>>,
}

/// Why a function did not become ready.
#[derive(Debug)]
pub enum StartError {
    /// It posted an init error (the body is Lambda's error JSON).
    Init(String),
    /// It exited before asking for an invocation.
    Exited(std::process::ExitStatus),
    /// It neither asked for an invocation nor exited in time.
    Timeout,
}

/// How an invocation ended.
#[derive(Debug)]
pub enum Answer {
    /// `POST .../response`: the handler's result.
    Response(Vec<u8>),
    /// `POST .../error`: the handler failed (Lambda's error JSON).
    Error(Vec<u8>),
}

/// One invocation as the Runtime API saw it.
#[derive(Debug)]
pub struct Invocation {
    pub answer: Answer,
    /// From handing out the event (the answer to `GET /next` written) to the response or
    /// error received: what Lambda bills, less its own overhead.
    pub duration: Duration,
}

/// One execution environment: a function process and the Runtime API it talks to.
pub struct Function {
    child: Child,
    requests: mpsc::Receiver<Request>,
    /// The function's `GET /next`, held until there is an event for it.
    parked: Option<Request>,
    invocations: u64,
    /// When the process was spawned.
    pub spawned: std::time::Instant,
    /// Spawn to the first `GET /next`: the function's init.
    pub cold_start: Duration,
}

impl Function {
    /// Spawns `command` (see `lambda_command`) with `AWS_LAMBDA_RUNTIME_API` set and waits for
    /// its first `GET /next`.
    pub async fn start(mut command: Command, within: Duration) -> Result<Function, StartError> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let mut requests = serve(listener);
        let spawned_at = std::time::Instant::now();
        let spawned = Instant::now();
        let mut child = command
            .env("AWS_LAMBDA_RUNTIME_API", &address)
            .spawn()
            .expect("spawn the function");
        let first = tokio::select! {
            first = timeout(within, requests.recv()) => first,
            status = child.wait() => return Err(StartError::Exited(status.expect("wait"))),
        };
        let cold_start = spawned.elapsed();
        let Ok(Some(request)) = first else {
            child.start_kill().ok();
            return Err(StartError::Timeout);
        };
        if request.path == INIT_ERROR {
            let body = String::from_utf8_lossy(&request.body).into_owned();
            request.answer.send(accepted()).ok();
            child.start_kill().ok();
            return Err(StartError::Init(body));
        }
        assert_eq!(request.path, NEXT, "the runtime's first request");
        Ok(Function {
            child,
            requests,
            parked: Some(request),
            invocations: 0,
            spawned: spawned_at,
            cold_start,
        })
    }

    /// Hands `event` to the function with `deadline` to answer (Lambda-Runtime-Deadline-Ms) and
    /// waits for the answer. Panics if the function dies or asks for anything unexpected.
    pub async fn invoke(&mut self, event: &[u8], deadline: Duration) -> Invocation {
        let next = match self.parked.take() {
            Some(next) => next,
            None => self.next_request().await,
        };
        assert_eq!(
            (next.method.as_str(), next.path.as_str()),
            ("GET", NEXT),
            "the function must ask for the next invocation"
        );
        self.invocations += 1;
        let request_id = format!("bench-{}", self.invocations);
        let deadline_ms = (SystemTime::now() + deadline)
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis();
        let mut answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
             lambda-runtime-aws-request-id: {request_id}\r\n\
             lambda-runtime-deadline-ms: {deadline_ms}\r\n\
             lambda-runtime-invoked-function-arn: {FUNCTION_ARN}\r\n\
             lambda-runtime-trace-id: Root=1-00000000-000000000000000000000000\r\n\
             content-length: {}\r\n\r\n",
            event.len()
        )
        .into_bytes();
        answer.extend_from_slice(event);
        let handed_out = Instant::now();
        next.answer.send(answer).ok();
        let reply = self.next_request().await;
        let duration = handed_out.elapsed();
        reply.answer.send(accepted()).ok();
        let base = format!("/2018-06-01/runtime/invocation/{request_id}/");
        let answer = match reply.path.strip_prefix(&base) {
            Some("response") => Answer::Response(reply.body),
            Some("error") => Answer::Error(reply.body),
            _ => panic!(
                "unexpected {} {} during an invocation",
                reply.method, reply.path
            ),
        };
        Invocation { answer, duration }
    }

    async fn next_request(&mut self) -> Request {
        tokio::select! {
            request = self.requests.recv() => request.expect("the Runtime API is served"),
            status = self.child.wait() => panic!("the function exited: {status:?}"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// The function's peak resident set size so far, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        peak_rss_mib(&self.pid().to_string())
    }

    pub async fn stop(mut self) {
        self.child.start_kill().ok();
        self.child.wait().await.ok();
    }
}

fn accepted() -> Vec<u8> {
    b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
        .to_vec()
}

/// Peak resident set size of a process in MiB (`VmHWM` in /proc/PID/status; "self" for ours).
pub fn peak_rss_mib(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Accepts the function's connections and passes each request on, with a way to answer it.
fn serve(listener: TcpListener) -> mpsc::Receiver<Request> {
    let (sender, receiver) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            stream.set_nodelay(true).ok();
            tokio::spawn(serve_connection(stream, sender.clone()));
        }
    });
    receiver
}

async fn serve_connection(stream: TcpStream, requests: mpsc::Sender<Request>) {
    let mut connection = BufReader::new(stream);
    loop {
        let Some((method, path, body)) = read_request(&mut connection).await else {
            return;
        };
        let answer = match path.as_str() {
            EXTENSION_REGISTER => {
                let body = r#"{"functionName":"login-etl","functionVersion":"$LATEST","handler":"bootstrap"}"#;
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                     lambda-extension-identifier: bench-extension\r\n\
                     content-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            }
            EXTENSION_NEXT => return std::future::pending().await,
            _ => {
                let (answer, answered) = oneshot::channel();
                let request = Request {
                    method,
                    path,
                    body,
                    answer,
                };
                if requests.send(request).await.is_err() {
                    return;
                }
                match answered.await {
                    Ok(answer) => answer,
                    Err(_) => return,
                }
            }
        };
        if connection.get_mut().write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// Reads one HTTP/1.1 request: method, path, body (Content-Length or chunked); None once the
/// client has closed the connection.
async fn read_request(stream: &mut BufReader<TcpStream>) -> Option<(String, String, Vec<u8>)> {
    let mut line = String::new();
    if stream.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut length = 0;
    let mut chunked = false;
    loop {
        line.clear();
        stream.read_line(&mut line).await.ok()?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().ok()?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            stream.read_line(&mut line).await.ok()?;
            let size = usize::from_str_radix(line.trim(), 16).ok()?;
            let mut chunk = vec![0; size + 2];
            stream.read_exact(&mut chunk).await.ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(length, 0);
        stream.read_exact(&mut body).await.ok()?;
    }
    Some((method, path, body))
}
