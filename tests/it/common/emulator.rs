//! `cargo lambda watch` serving this crate's function on a free port; killed when dropped. Its
//! output goes to LOGIN_ETL_LOG_DIR (scanned for PII by `make test`), if set, else to a temporary
//! file; either way a test can read it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Emulator {
    pub port: u16,
    child: Child,
    log: PathBuf,
    /// The log is a temporary file, removed on drop.
    log_is_temporary: bool,
}

/// How many execution environments the emulator may run, and how many invocations each serves
/// at once.
#[derive(Clone, Copy)]
pub struct Environments {
    /// Function processes (`cargo lambda watch --concurrency`), started as invocations need them.
    pub instances: usize,
    /// `AWS_LAMBDA_MAX_CONCURRENCY` of each process, as Lambda Managed Instances set it.
    pub max_concurrency: usize,
    /// The function reaches the emulator's Runtime API through a proxy that answers 404 to the
    /// Extensions API, as a runtime or emulator without it does.
    pub without_extensions_api: bool,
}

impl Default for Environments {
    fn default() -> Self {
        Environments {
            instances: 1,
            max_concurrency: 1,
            without_extensions_api: false,
        }
    }
}

impl Emulator {
    /// Starts the emulator with only these variables of ours (no MASKING_KEY or DATABASE_URL
    /// leaks in from the test environment).
    pub fn start(env: &[(&str, &str)]) -> Emulator {
        Self::start_with(env, Environments::default())
    }

    /// `start`, with several processes, or processes that serve several invocations at once.
    pub fn start_with(env: &[(&str, &str)], environments: Environments) -> Emulator {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = Command::new("cargo");
        command
            .args([
                "lambda",
                "watch",
                "--ignore-changes",
                "-A",
                "127.0.0.1",
                "-P",
                &port.to_string(),
                "--concurrency",
                &environments.instances.to_string(),
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("MASKING_KEY")
            .env_remove("DATABASE_URL")
            // DEBUG on purpose: even then no PII may appear (make test scans these logs).
            .env("RUST_LOG", "debug");
        // Nor the PG* variables `make test`'s throw-away server exports: the function would
        // read them where a test gives it none.
        for variable in [
            "PGHOST",
            "PGPORT",
            "PGUSER",
            "PGPASSWORD",
            "PGDATABASE",
            "PGSSLMODE",
            "PGSSLROOTCERT",
        ] {
            command.env_remove(variable);
        }
        let name = format!("emulator-{port}");
        let (log, log_is_temporary) = match log_dir() {
            Some(dir) => (log_path(&dir, &name), false),
            None => (log_path(&std::env::temp_dir(), &name), true),
        };
        let sink = std::fs::File::create(&log).expect("emulator log file");
        command
            .stdout(Stdio::from(sink.try_clone().unwrap()))
            .stderr(Stdio::from(sink));
        for (name, value) in env {
            command.env(name, value);
        }
        // The emulator sets AWS_LAMBDA_MAX_CONCURRENCY=1 and AWS_LAMBDA_RUNTIME_API for every
        // process it starts; it runs the function with `cargo run`, so cargo's runner can set
        // them as Lambda Managed Instances, or a runtime without the Extensions API, would. The
        // emulator's Runtime API serves concurrent `next` requests.
        let mut runner: Vec<String> = Vec::new();
        if environments.max_concurrency > 1 {
            runner.push(format!(
                "export AWS_LAMBDA_MAX_CONCURRENCY={}",
                environments.max_concurrency
            ));
        }
        if environments.without_extensions_api {
            let proxy = runtime_api_without_extensions(port);
            runner.push(format!(
                "export AWS_LAMBDA_RUNTIME_API=\"$(printf %s \"$AWS_LAMBDA_RUNTIME_API\" | sed 's/:{port}/:{proxy}/')\""
            ));
        }
        if !runner.is_empty() {
            let script = std::env::temp_dir().join(format!("login-etl-runner-{port}.sh"));
            runner.insert(0, "#!/bin/sh".into());
            runner.push("exec \"$@\"".into());
            std::fs::write(&script, runner.join("\n") + "\n").unwrap();
            std::fs::set_permissions(
                &script,
                <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
            )
            .unwrap();
            let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
            command.env(
                format!(
                    "CARGO_TARGET_{}_RUNNER",
                    triple.to_uppercase().replace('-', "_")
                ),
                &script,
            );
        }
        let child = command
            .spawn()
            .expect("cargo-lambda is installed (`make test` installs it)");
        let mut emulator = Emulator {
            port,
            child,
            log,
            log_is_temporary,
        };
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return emulator;
            }
            if let Ok(Some(status)) = emulator.child.try_wait() {
                panic!("`cargo lambda watch` exited ({status}): is cargo-lambda installed? `make test` installs it");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("cargo lambda watch did not listen on port {port} within 30 s");
    }

    /// Invokes the function with `cargo lambda invoke --data-file`, as a user would, and
    /// returns its JSON response.
    pub fn invoke(&self, event: &serde_json::Value) -> serde_json::Value {
        let file = std::env::temp_dir().join(format!(
            "login-etl-event-{}-{}.json",
            std::process::id(),
            self.port
        ));
        std::fs::write(&file, event.to_string()).unwrap();
        // `timeout`: an invoke waits forever for a function that failed to start.
        let output = Command::new("timeout")
            .args([
                "180",
                "cargo",
                "lambda",
                "invoke",
                "-A",
                "127.0.0.1",
                "-P",
                &self.port.to_string(),
            ])
            .args(["login-etl", "--data-file"])
            .arg(&file)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo lambda invoke runs");
        std::fs::remove_file(&file).ok();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "invoke failed: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("response is JSON: {stdout}"))
    }

    /// Invokes the function over the emulator's Invoke API, as the event source mapping does;
    /// many of these can run at once. Returns the function's JSON answer (an error object when
    /// the function failed).
    pub async fn invoke_over_http(&self, event: &serde_json::Value) -> serde_json::Value {
        Self::invoke_url(&self.url(), event).await
    }

    /// `invoke_over_http` on the emulator at `url` (for tasks that do not borrow the emulator).
    pub async fn invoke_url(url: &str, event: &serde_json::Value) -> serde_json::Value {
        let answer = reqwest::Client::new()
            .post(format!("{url}/2015-03-31/functions/login-etl/invocations"))
            .body(event.to_string())
            .timeout(Duration::from_secs(180))
            .send()
            .await
            .expect("the emulator answers")
            .text()
            .await
            .expect("the answer has a body");
        serde_json::from_str(&answer).unwrap_or_else(|_| panic!("answer is JSON: {answer}"))
    }

    /// The process ids of the function processes this emulator started.
    pub fn function_processes(&self) -> Vec<u32> {
        let marker = format!("AWS_LAMBDA_RUNTIME_API=http://127.0.0.1:{}/", self.port);
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let exe = std::fs::read_link(entry.path().join("exe")).unwrap_or_default();
            let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            let environ = String::from_utf8_lossy(&environ);
            if exe.ends_with("login-etl") && environ.split('\0').any(|v| v.starts_with(&marker)) {
                pids.push(pid);
            }
        }
        pids
    }

    /// What the emulator and the function printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The base URL of its Lambda Invoke API (for the event source mapping).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // The function processes first: one serving invocations concurrently does not exit when
        // the emulator's Runtime API goes away (on Lambda, SIGTERM ends it, as here).
        for pid in self.function_processes() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.log_is_temporary {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// A proxy in front of the emulator's Runtime API on `upstream` that answers 404 to the
/// Extensions API (`/2020-01-01/extension/...`) and passes everything else through; returns its
/// port. It serves until the test process ends.
fn runtime_api_without_extensions(upstream: u16) -> u16 {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut client = client;
                // The request line is in the first read of a fresh connection.
                let mut head = vec![0; 8192];
                let Ok(read) = client.read(&mut head) else {
                    return;
                };
                head.truncate(read);
                // The path has the emulator's prefix: `/.rt/<function>/2020-01-01/extension/...`.
                if head.windows(21).any(|w| w == b"/2020-01-01/extension") {
                    let _ = client.write_all(
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                    return;
                }
                let Ok(mut server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    return;
                };
                if server.write_all(&head).is_err() {
                    return;
                }
                let (mut from_client, mut to_client) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_client, &mut server);
                });
                let _ = std::io::copy(&mut to_client, &mut client);
            });
        }
    });
    port
}

fn log_dir() -> Option<PathBuf> {
    std::env::var_os("LOGIN_ETL_LOG_DIR").map(PathBuf::from)
}

fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}-{}.log", std::process::id()))
}
