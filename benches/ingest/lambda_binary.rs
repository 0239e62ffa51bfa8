//! The real release binary, as Lambda runs it: a stand-in Runtime API on loopback
//! (`benches/runtime_api`) hands it SQS events and times each invocation.
//!
//! - Per batch (`deployed`): the same batches through the binary and through the in-process
//!   handler (`Processor::process`, what the table above measures), passes alternating, the
//!   table truncated before each. For the binary, its own EMF `DurationMs` (what the dashboard
//!   shows; it spans `process`, as the in-process figure does) and the Runtime API's time from
//!   handing out the event to the response (what an invocation takes: reading and deserializing
//!   the event, the handler, serializing and sending the answer).
//! - Cold start (`report`): spawn to the first `GET .../invocation/next`, which the runtime sends
//!   once `main` has read the configuration, connected, prepared, checked the schema and
//!   registered its shutdown extension; and spawn to the connect attempt (the database port
//!   accepting the TCP connection), the part before connecting, uncapped and with the CPU of a
//!   128 MB function (a cgroup v1 quota, `benches/shapes/cgroup.rs`).
//! - Peak RSS: `VmHWM` of the function's process after it answered one 5,000-record batch.

use std::fmt::Write as _;
use std::io::BufRead;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_postgres::Client;

use crate::cgroup::{self, CpuCap};
use crate::runtime_api::{self, Answer, Function};
use crate::{args, median, percentile_ms, workload, Bench, Options, Path};

const BINARY: &str = env!("CARGO_BIN_EXE_login-etl");
const COLD_STARTS: usize = 15;
const RSS_BATCH: usize = 5_000;
/// What Lambda gives the function to answer; far more than any batch here takes.
const INVOCATION_TIMEOUT: Duration = Duration::from_secs(60);
/// The smallest memory size, whose CPU share (128/1769 of a vCPU) makes the slowest cold start.
const SMALLEST_MB: u32 = 128;

/// Batches per pass when the deployed binary is compared with the in-process handler: at 1,000
/// records the 150 batches in which the gap was first reported; smaller sizes are cheap enough
/// for more.
fn deployed_batches(size: usize) -> usize {
    match size {
        0..=10 => 300,
        11..=100 => 200,
        _ => 150,
    }
}

/// The function as deployed (prepared statements, no vault), its stdout read for EMF lines.
fn command(url: &str) -> (Command, mpsc::UnboundedReceiver<Duration>) {
    let mut command = runtime_api::lambda_command(BINARY, SMALLEST_MB);
    command
        .env("DATABASE_URL", url)
        .env("MASKING_KEY", workload::MASKING_KEY);
    let (reader, writer) = std::io::pipe().expect("a pipe for the function's stdout");
    command.stdout(writer);
    (command, read_metrics(reader))
}

async fn start(command: Command) -> Function {
    Function::start(command, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("login-etl did not start: {e:?}"))
}

/// Hands `event` to the function; its answer, and the invocation's duration.
async fn invoke(function: &mut Function, event: &[u8]) -> (Vec<u8>, Duration) {
    let invocation = function.invoke(event, INVOCATION_TIMEOUT).await;
    match invocation.answer {
        Answer::Response(body) => (body, invocation.duration),
        Answer::Error(body) => panic!(
            "login-etl failed the batch: {}",
            String::from_utf8_lossy(&body)
        ),
    }
}

/// The `DurationMs` of the function's next EMF line (printed before it answers).
async fn emf_duration(metrics: &mut mpsc::UnboundedReceiver<Duration>) -> Duration {
    timeout(Duration::from_secs(10), metrics.recv())
        .await
        .expect("an EMF line for every batch")
        .expect("login-etl's stdout is open")
}

/// Reads the function's stdout (log lines, and one EMF line per batch) to its end, passing on
/// each batch's `DurationMs`.
fn read_metrics(stdout: std::io::PipeReader) -> mpsc::UnboundedReceiver<Duration> {
    let (sender, receiver) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            // The EMF line is the only JSON object with an `_aws` member.
            let Ok(document) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if !document["_aws"].is_object() {
                continue;
            }
            assert_eq!(document["Failed"], 0, "no row may fail in the benchmark");
            let ms = document["DurationMs"].as_f64().expect("EMF has DurationMs");
            if sender.send(Duration::from_secs_f64(ms / 1e3)).is_err() {
                return;
            }
        }
    });
    receiver
}

/// The per-batch time users get, next to the in-process handler's on the same batches.
pub async fn deployed(bench: &mut Bench, url: &str, options: &Options) {
    let runs = options.runs;
    println!(
        "\nThe deployed binary against the in-process handler, same batches, {runs} runs of each, \
         passes alternating; per-batch ms pooled over the runs"
    );
    println!(
        "| batch | batches | in-process p50 / p99 | in-process p50, first / last pass-length | \
         binary EMF DurationMs p50 / p99 | binary invocation p50 / p99 | EMF / in-process | \
         invocation / in-process |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut csv = String::from(
        "batch_size,batches,in_process_p50_ms,in_process_p99_ms,in_process_first_p50_ms,\
         in_process_last_p50_ms,emf_p50_ms,emf_p99_ms,invocation_p50_ms,invocation_p99_ms,\
         emf_over_in_process,invocation_over_in_process,runs\n",
    );
    // Up to the 1,000 records the gap was reported at: 150 batches of 5,000 would hold about
    // 1.5 GB of records and events in this process.
    for &size in options.sizes.iter().filter(|&&size| size <= 1_000) {
        let batches = crate::workload(size, size * deployed_batches(size), &bench.masker);
        let events: Vec<Vec<u8>> = batches
            .iter()
            .map(|batch| {
                let mut event = SqsEvent::default();
                event.records = batch.records.clone();
                serde_json::to_vec(&event).unwrap()
            })
            .collect();
        let expected: i64 = batches.iter().map(|b| b.new_rows.len() as i64).sum();
        let (command, mut metrics) = command(url);
        let mut function = start(command).await;
        // Warm-up, not counted, as the in-process passes have theirs.
        for event in &events[..events.len().min(3)] {
            invoke(&mut function, event).await;
            emf_duration(&mut metrics).await;
        }
        bench
            .pass(Path::Handler, &batches[..batches.len().min(3)])
            .await;

        let (mut in_process, mut emf, mut invocation) = (Vec::new(), Vec::new(), Vec::new());
        let (mut emf_ratios, mut invocation_ratios) = (Vec::new(), Vec::new());
        let (mut first, mut last) = (Vec::new(), Vec::new());
        // The table grows through a pass: its first batches are what a pass of the table above
        // writes (records_per_pass), its last ones show what a longer run adds.
        let window = crate::records_per_pass(size) / size;
        for run in 0..runs {
            let binary_pass = async |bench: &Bench, function: &mut Function, metrics: &mut _| {
                bench.truncate().await;
                let (mut emf, mut invocation) = (Vec::new(), Vec::new());
                for event in &events {
                    invocation.push(invoke(function, event).await.1);
                    emf.push(emf_duration(metrics).await);
                }
                assert_eq!(
                    stored(&bench.admin).await,
                    expected,
                    "the binary stored another row count than the handler"
                );
                (emf, invocation)
            };
            // Alternate which goes first, so neither always follows the other's writes.
            let (mut run_in_process, (mut run_emf, mut run_invocation)) = if run % 2 == 0 {
                let binary = binary_pass(bench, &mut function, &mut metrics).await;
                (bench.pass(Path::Handler, &batches).await.latencies, binary)
            } else {
                let in_process = bench.pass(Path::Handler, &batches).await.latencies;
                (
                    in_process,
                    binary_pass(bench, &mut function, &mut metrics).await,
                )
            };
            first.extend_from_slice(&run_in_process[..window.min(run_in_process.len())]);
            last.extend_from_slice(&run_in_process[run_in_process.len().saturating_sub(window)..]);
            let base = percentile_ms(&mut run_in_process, 50.0);
            emf_ratios.push(percentile_ms(&mut run_emf, 50.0) / base);
            invocation_ratios.push(percentile_ms(&mut run_invocation, 50.0) / base);
            in_process.extend(run_in_process);
            emf.extend(run_emf);
            invocation.extend(run_invocation);
        }
        function.stop().await;
        let p50_p99 =
            |values: &mut Vec<Duration>| (percentile_ms(values, 50.0), percentile_ms(values, 99.0));
        let batches = batches.len();
        let (in_process_p50, in_process_p99) = p50_p99(&mut in_process);
        let (first, last) = (
            percentile_ms(&mut first, 50.0),
            percentile_ms(&mut last, 50.0),
        );
        let (emf_p50, emf_p99) = p50_p99(&mut emf);
        let (invocation_p50, invocation_p99) = p50_p99(&mut invocation);
        let (emf_ratio, invocation_ratio) =
            (median(&mut emf_ratios), median(&mut invocation_ratios));
        println!(
            "| {size} | {batches} | {in_process_p50:.2} / {in_process_p99:.2} | {first:.2} / \
             {last:.2} | {emf_p50:.2} / {emf_p99:.2} | {invocation_p50:.2} / {invocation_p99:.2} | \
             {emf_ratio:.2} | {invocation_ratio:.2} |"
        );
        writeln!(
            csv,
            "{size},{batches},{in_process_p50:.2},{in_process_p99:.2},{first:.2},{last:.2},\
             {emf_p50:.2},{emf_p99:.2},{invocation_p50:.2},{invocation_p99:.2},{emf_ratio:.2},\
             {invocation_ratio:.2},{runs}"
        )
        .unwrap();
    }
    println!(
        "ratios: median over runs of (the binary's p50 / the in-process p50 of the same run); \
         invocation: the Runtime API's event handed out -> response received"
    );
    args::write_csv(&options.common.csv_beside("deployed"), &csv);
}

async fn stored(admin: &Client) -> i64 {
    admin
        .query_one("SELECT count(*) FROM user_logins", &[])
        .await
        .unwrap()
        .get(0)
}

/// Cold start, the part before connecting (uncapped and at 128 MB), peak RSS, size.
pub async fn report(admin: &Client, url: &str, common: &args::Common) {
    let size_mib = std::fs::metadata(BINARY).map_or(f64::NAN, |m| m.len() as f64 / 1048576.0);
    println!(
        "\nLambda binary: {BINARY} ({size_mib:.2} MiB, stripped; x86_64 glibc, not the arm64 zip)"
    );

    let mut cold_ms: Vec<f64> = Vec::new();
    let mut idle_rss: Vec<f64> = Vec::new();
    for _ in 0..COLD_STARTS {
        let function = start(command(url).0).await;
        cold_ms.push(function.cold_start.as_secs_f64() * 1e3);
        idle_rss.push(function.peak_rss_mib());
        function.stop().await;
    }

    let cap = CpuCap::create("ingest-cold-start").ok();
    let mut before_connecting: Vec<(String, f64)> = Vec::new();
    for sslmode in ["disable", "prefer"] {
        let mut uncapped: Vec<f64> = Vec::new();
        let mut capped: Vec<f64> = Vec::new();
        for _ in 0..COLD_STARTS {
            uncapped.push(until_connect_attempt(sslmode, None).await);
            if let Some(cap) = &cap {
                capped.push(until_connect_attempt(sslmode, Some((cap, SMALLEST_MB))).await);
            }
        }
        before_connecting.push((
            format!("spawn to the connect attempt, sslmode={sslmode}, uncapped"),
            median(&mut uncapped),
        ));
        before_connecting.push((
            format!("spawn to the connect attempt, sslmode={sslmode}, CPU of {SMALLEST_MB} MB"),
            if cap.is_some() {
                median(&mut capped)
            } else {
                f64::NAN // no cgroup v1 cpu controller to write to (not root?)
            },
        ));
    }

    admin
        .batch_execute("TRUNCATE user_logins")
        .await
        .expect("truncate");
    let (command, mut metrics) = command(url);
    let mut function = start(command).await;
    let mut event = SqsEvent::default();
    event.records = workload::records(7, RSS_BATCH);
    let body = serde_json::to_vec(&event).unwrap();
    let (answer, invocation) = invoke(&mut function, &body).await;
    emf_duration(&mut metrics).await;
    let batch_rss = function.peak_rss_mib();
    function.stop().await;
    let failures = serde_json::from_slice::<serde_json::Value>(&answer)
        .ok()
        .and_then(|v| v["batchItemFailures"].as_array().map(Vec::len));
    let stored = stored(admin).await;

    let mut measures = vec![
        Measure::new(
            "Lambda binary (x86_64 glibc, stripped; not the arm64 zip)",
            format!("{size_mib:.2}"),
            "MiB",
            1,
        ),
        Measure::new(
            "cold start: spawn to the first GET /next (connect, prepare, schema check, extension)",
            format!("{:.1}", median(&mut cold_ms)),
            "ms",
            COLD_STARTS,
        ),
    ];
    for (what, ms) in before_connecting {
        measures.push(Measure::new(what, format!("{ms:.1}"), "ms", COLD_STARTS));
    }
    measures.extend([
        Measure::new(
            "peak RSS when ready (VmHWM)",
            format!("{:.1}", median(&mut idle_rss)),
            "MiB",
            COLD_STARTS,
        ),
        Measure::new(
            format!("peak RSS after one {RSS_BATCH}-record batch (VmHWM)"),
            format!("{batch_rss:.1}"),
            "MiB",
            1,
        ),
        Measure::new(
            "that batch: invocation",
            format!("{:.0}", invocation.as_secs_f64() * 1e3),
            "ms",
            1,
        ),
        Measure::new("that batch: rows stored", stored.to_string(), "rows", 1),
        Measure::new(
            "that batch: failures reported",
            failures.map_or("?".to_string(), |n| n.to_string()),
            "records",
            1,
        ),
    ]);

    println!("| measure | value | median of |");
    println!("| --- | ---: | ---: |");
    let mut csv = String::from("measure,value,unit,samples\n");
    for Measure {
        what,
        value,
        unit,
        samples,
    } in &measures
    {
        println!("| {what} | {value} {unit} | {samples} |");
        writeln!(csv, "{},{value},{unit},{samples}", args::field(what)).unwrap();
    }
    args::write_csv(&common.csv_beside("binary"), &csv);
}

/// One figure of the report: what it is, its value as printed and its unit, and how many
/// measurements it is the median of.
struct Measure {
    what: String,
    value: String,
    unit: &'static str,
    samples: usize,
}

impl Measure {
    fn new(what: impl Into<String>, value: String, unit: &'static str, samples: usize) -> Measure {
        Measure {
            what: what.into(),
            value,
            unit,
            samples,
        }
    }
}

/// Milliseconds from spawning the binary to its TCP connect to the database, on a loopback port
/// that accepts and says nothing: everything `main` does before connecting, and nothing of the
/// connect itself. With `cap`, the process runs with the CPU of that memory size from exec on.
async fn until_connect_attempt(sslmode: &str, cap: Option<(&CpuCap, u32)>) -> f64 {
    let database = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = database.local_addr().unwrap().port();
    let mut command = runtime_api::lambda_command(BINARY, cap.map_or(SMALLEST_MB, |c| c.1));
    command
        // Never reached: the binary is stopped while it waits for the database.
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .env(
            "DATABASE_URL",
            format!("postgres://etl@127.0.0.1:{port}/etl?sslmode={sslmode}"),
        )
        .env("MASKING_KEY", workload::MASKING_KEY);
    if let Some((cap, memory_mb)) = cap {
        cap.set_memory(memory_mb).expect("set the CPU quota");
        cgroup::join_at_exec(&mut command, cap.procs_file().expect("cgroup.procs"));
    }
    let spawned = Instant::now();
    let mut child = command.spawn().expect("spawn the login-etl binary");
    let accepted = tokio::select! {
        accepted = timeout(Duration::from_secs(30), database.accept()) => accepted,
        status = child.wait() => panic!("login-etl exited before connecting: {status:?}"),
    };
    let elapsed = spawned.elapsed();
    accepted
        .expect("login-etl connects within 30 s")
        .expect("accept");
    child.start_kill().ok();
    child.wait().await.ok();
    elapsed.as_secs_f64() * 1e3
}
