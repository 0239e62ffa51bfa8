//! End-to-end ingest benchmark: the real handler against the database's own limit, in one run.
//!
//! `make bench` starts a durable throw-away PostgreSQL (fsync and synchronous_commit on) and runs
//! this with DATABASE_URL set; by hand: `cargo bench --bench ingest -- [--runs N] [--quick]`
//! (`-- --help` lists the options).
//!
//! For each batch size it generates realistic SQS records (see `benches/workload`) and measures,
//! in the same process, against the same table and unique index, truncated before every pass:
//! - `handler`: `Processor::process` (plan, parse, validate, mask, `Store::write`), one call per
//!   SQS batch, as the Lambda runtime makes it;
//! - `handler, optimistic write`: the same with every record marked a first delivery, so the
//!   store writes without asking which ids are stored, and a stored one makes the COPY fail
//!   (23505) and the batch go by INSERT: the write issue #25 weighed (docs/benchmarks.md);
//! - `COPY`: binary COPY of exactly the rows the handler stores, already masked, one COPY per
//!   batch: what PostgreSQL can take at best;
//! - the bulk-write candidates that lost (`candidates.rs`), on the same masked rows.
//!
//! Passes alternate in order from run to run, throughput is the median of the runs and the ratio
//! the median of each run's handler/COPY ratio, so a noisy neighbour moves both sides alike.
//! Finally it starts the real release binary against a stub of the Lambda Runtime API to time
//! the cold start and read the peak RSS after a 5,000-record batch (see `lambda_binary.rs`).
//!
//! Results go to stdout (markdown) and to CSV (`--csv`, and `-deployed.csv` and `-binary.csv`
//! beside it), which `make bench` renders into docs/benchmarks.md.

#[path = "../args/mod.rs"]
mod args;
#[path = "../database/mod.rs"]
mod database;
#[path = "../workload/mod.rs"]
mod workload;

mod candidates;
#[path = "../shapes/cgroup.rs"]
#[allow(dead_code)] // the CPU cap only, for the cold start at 128 MB
mod cgroup;
mod lambda_binary;
#[path = "../runtime_api/mod.rs"]
mod runtime_api;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsMessage;
use clap::Parser;
use login_etl::handler::Processor;
use login_etl::store::DatabaseConfig;
use login_etl::store::{Store, StoreOptions};
use login_etl_core::batch::{plan_batch, LoginRow};
use login_etl_core::mask::Masker;
use time::OffsetDateTime;
use tokio::time::Instant;
use tokio_postgres::Client;

use database::{connect, fresh_database};

const BENCH_DATABASE: &str = "login_etl_bench";

/// End-to-end ingest: the real handler against binary COPY of the same rows (and the bulk-write
/// candidates) in one run, then the deployed release binary: per batch, cold start, peak RSS.
///
/// Needs DATABASE_URL; `make bench` starts a durable PostgreSQL and runs it. The in-process
/// table goes to --csv, the deployed binary's and its cold start's beside it (-deployed.csv,
/// -binary.csv).
#[derive(Parser)]
struct Options {
    /// Runs per batch size: throughput and ratios are medians over them
    #[arg(
        long,
        value_name = "N",
        default_value_t = 5,
        default_value_if("quick", "true", "3")
    )]
    runs: usize,
    /// Batch sizes, comma-separated
    #[arg(
        long,
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "10,100,1000,5000"
    )]
    sizes: Vec<usize>,
    /// A quick look: 3 runs (unless --runs says otherwise), no candidates
    #[arg(long)]
    quick: bool,
    /// Leave out the bulk-write candidates (benches/ingest/candidates.rs)
    #[arg(long)]
    no_candidates: bool,
    /// Leave out the deployed release binary (its per-batch times, cold start and peak RSS)
    #[arg(long)]
    no_lambda_binary: bool,
    /// Only the deployed binary against the in-process handler, and the cold start
    #[arg(long)]
    deployed_only: bool,
    #[command(flatten)]
    common: args::Common,
}

impl Options {
    fn candidates(&self) -> bool {
        !(self.no_candidates || self.quick)
    }

    fn lambda_binary(&self) -> bool {
        !self.no_lambda_binary || self.deployed_only
    }
}

/// Records per pass for a batch size: enough batches to average over, little enough for a
/// 2-core machine to finish the whole benchmark in a few minutes.
fn records_per_pass(batch_size: usize) -> usize {
    match batch_size {
        0..=10 => 2_000,
        11..=100 => 10_000,
        _ => (20_000 / batch_size).max(4) * batch_size,
    }
}

/// One batch of the workload: what SQS delivers, and the rows the handler will newly store
/// (already masked: the input of the COPY baseline and the candidates).
struct Batch {
    records: Vec<SqsMessage>,
    /// `records` with every `ApproximateReceiveCount` 1: the optimistic write's input.
    as_first_deliveries: Vec<SqsMessage>,
    new_rows: Vec<LoginRow>,
}

fn workload(batch_size: usize, records: usize, masker: &Masker) -> Vec<Batch> {
    let records = workload::records(batch_size as u64, records);
    let today = OffsetDateTime::now_utc().date();
    let mut stored: HashSet<String> = HashSet::new();
    records
        .chunks(batch_size)
        .map(|chunk| {
            let plan = plan_batch(chunk, masker, today).expect("generated records have ids");
            let new_rows = plan
                .rows
                .into_iter()
                .filter(|row| stored.insert(row.message_id.clone()))
                .collect();
            let as_first_deliveries = chunk
                .iter()
                .cloned()
                .map(|mut record| {
                    record
                        .attributes
                        .insert("ApproximateReceiveCount".into(), "1".into());
                    record
                })
                .collect();
            Batch {
                records: chunk.to_vec(),
                as_first_deliveries,
                new_rows,
            }
        })
        .collect()
}

/// What one pass over the workload measured.
struct Pass {
    elapsed: Duration,
    latencies: Vec<Duration>,
}

/// The ways of loading a workload that are measured against each other.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Handler,
    /// The handler writing without the stored-ids lookup (`Batch::as_first_deliveries`).
    Optimistic,
    Copy,
    /// The handler's own CPU work: `plan_batch` without any database call.
    PlanOnly,
    Candidate(candidates::Candidate),
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Handler => "handler (Processor::process)",
            Path::Optimistic => "handler, optimistic write (no lookup; not adopted)",
            Path::Copy => "COPY baseline (binary, pre-masked)",
            Path::PlanOnly => "of which plan_batch alone (no database)",
            Path::Candidate(c) => c.name(),
        }
    }
}

struct Bench {
    masker: Masker,
    admin: Client,
    raw: Client,
    processor: Processor,
    copy: candidates::Copy,
    candidates: candidates::Candidates,
}

impl Bench {
    async fn truncate(&self) {
        self.admin
            .batch_execute("TRUNCATE user_logins")
            .await
            .expect("truncate user_logins");
    }

    async fn pass(&mut self, path: Path, batches: &[Batch]) -> Pass {
        self.truncate().await;
        let mut latencies = Vec::with_capacity(batches.len());
        let mut stored = 0;
        let started = Instant::now();
        for batch in batches {
            let begun = Instant::now();
            stored += match path {
                Path::Handler | Path::Optimistic => {
                    let records = if path == Path::Handler {
                        &batch.records
                    } else {
                        &batch.as_first_deliveries
                    };
                    let deadline = Instant::now() + Duration::from_secs(60);
                    let outcome = self
                        .processor
                        .process(records, deadline)
                        .await
                        .expect("the handler processes the batch");
                    assert_eq!(outcome.failed, 0, "no row may fail in the benchmark");
                    outcome.stored
                }
                Path::Copy => self.copy.write(&self.raw, &batch.new_rows).await,
                Path::PlanOnly => {
                    let today = OffsetDateTime::now_utc().date();
                    let plan = plan_batch(&batch.records, &self.masker, today).unwrap();
                    std::hint::black_box(&plan);
                    batch.new_rows.len()
                }
                Path::Candidate(candidate) => {
                    self.candidates
                        .write(&self.raw, candidate, &batch.new_rows)
                        .await
                }
            };
            latencies.push(begun.elapsed());
        }
        let elapsed = started.elapsed();
        let expected: usize = batches.iter().map(|b| b.new_rows.len()).sum();
        assert_eq!(
            stored,
            expected,
            "{} stored a different row count",
            path.name()
        );
        Pass { elapsed, latencies }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile of pooled per-batch latencies, in milliseconds.
fn percentile_ms(latencies: &mut [Duration], p: f64) -> f64 {
    latencies.sort();
    let rank = ((p / 100.0) * latencies.len() as f64).ceil().max(1.0) as usize;
    latencies[rank.min(latencies.len()) - 1].as_secs_f64() * 1e3
}

async fn setting(client: &Client, name: &str) -> String {
    client
        .query_one(&format!("SHOW {name}"), &[])
        .await
        .map(|row| row.get(0))
        .unwrap_or_else(|_| "?".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".into())
}

async fn print_machine(client: &Client) -> bool {
    let version: String = client
        .query_one("SELECT version()", &[])
        .await
        .unwrap()
        .get(0);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let fsync = setting(client, "fsync").await;
    let synchronous_commit = setting(client, "synchronous_commit").await;
    println!("machine: {cores} cores, {}", cpu_model());
    println!("server:  {version}");
    println!(
        "durability: fsync={fsync} synchronous_commit={synchronous_commit} full_page_writes={} wal_sync_method={} shared_buffers={}",
        setting(client, "full_page_writes").await,
        setting(client, "wal_sync_method").await,
        setting(client, "shared_buffers").await,
    );
    fsync == "on" && synchronous_commit == "on"
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let options: Options = args::parse();
    let server_url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!("DATABASE_URL must name a PostgreSQL server; `make bench` starts a durable one")
    });
    let url = fresh_database(&server_url, BENCH_DATABASE).await;
    let admin = connect(&url).await;
    if !print_machine(&admin).await {
        println!(
            "WARNING: the server is not durable; start it with `PG_DURABLE=1 scripts/pg.sh start`"
        );
    }
    let masker = Masker::new(workload::MASKING_KEY.as_bytes()).unwrap();
    let config = DatabaseConfig::from_url(&url).expect("DATABASE_URL parses");
    let far = Instant::now() + Duration::from_secs(30);
    let store = Store::connect(config, StoreOptions::default(), far)
        .await
        .expect("connect to a migrated database");
    let raw = connect(&url).await;
    let mut bench = Bench {
        copy: candidates::Copy::prepare(&raw).await,
        candidates: candidates::Candidates::prepare(&raw).await,
        masker: masker.clone(),
        admin,
        raw,
        processor: Processor::new(masker.clone(), store),
    };

    let lambda_binary = options.lambda_binary();
    if lambda_binary {
        // First, while this process is small: a child forked from it and capped before exec
        // pays for tearing down the copy of its address space at the capped CPU's speed, which
        // a function started by Lambda does not.
        lambda_binary::report(&bench.admin, &url, &options.common).await;
    }
    if !options.deployed_only {
        in_process_table(&mut bench, &options, &masker).await;
    }
    if lambda_binary {
        lambda_binary::deployed(&mut bench, &url, &options).await;
    }
}

/// Every path on the same batches, in-process: the handler against COPY and the candidates.
async fn in_process_table(bench: &mut Bench, options: &Options, masker: &Masker) {
    println!(
        "\n{} runs per batch size, medians; latency percentiles pooled over all runs",
        options.runs
    );
    let mut paths = vec![Path::Handler, Path::Copy, Path::PlanOnly];
    if options.candidates() {
        paths.push(Path::Optimistic);
        paths.extend(candidates::Candidate::ALL.map(Path::Candidate));
    }
    println!("| batch | path | records/s | x COPY | batch p50 ms | batch p99 ms |");
    println!("| ---: | --- | ---: | ---: | ---: | ---: |");
    let mut csv = String::from("batch_size,path,records_per_s,x_copy,p50_ms,p99_ms,runs\n");
    for &size in &options.sizes {
        let batches = workload(size, records_per_pass(size), masker);
        let records: usize = batches.iter().map(|b| b.records.len()).sum();
        let mut throughput: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
        let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
        let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); paths.len()];
        // One warm-up pass each (plans, caches, connections), not counted.
        for &path in &paths {
            bench.pass(path, &batches[..batches.len().min(3)]).await;
        }
        for run in 0..options.runs {
            let mut elapsed = vec![Duration::ZERO; paths.len()];
            for k in 0..paths.len() {
                // Rotate the order so no path always runs first or last.
                let i = (k + run) % paths.len();
                let pass = bench.pass(paths[i], &batches).await;
                elapsed[i] = pass.elapsed;
                throughput[i].push(records as f64 / pass.elapsed.as_secs_f64());
                latencies[i].extend(pass.latencies);
            }
            let copy = elapsed[1].as_secs_f64();
            for i in 0..paths.len() {
                ratios[i].push(copy / elapsed[i].as_secs_f64());
            }
        }
        for (i, path) in paths.iter().enumerate() {
            let rate = median(&mut throughput[i]);
            let x_copy = median(&mut ratios[i]);
            let p50 = percentile_ms(&mut latencies[i], 50.0);
            let p99 = percentile_ms(&mut latencies[i], 99.0);
            let name = path.name();
            println!("| {size} | {name} | {rate:.0} | {x_copy:.2} | {p50:.2} | {p99:.2} |");
            writeln!(
                csv,
                "{size},{},{rate:.0},{x_copy:.2},{p50:.2},{p99:.2},{}",
                args::field(name),
                options.runs
            )
            .unwrap();
        }
    }
    println!(
        "\nrecords/s counts every SQS record of the workload (~98.5% become new rows, ~1% are invalid, ~0.5% redelivered);"
    );
    println!("x COPY = median over runs of (COPY time / this path's time) in the same run.");
    println!(
        "benchmark process peak RSS: {:.1} MiB (holds every generated workload; see the Lambda binary below)",
        runtime_api::peak_rss_mib("self")
    );
    args::write_csv(&options.common.csv, &csv);
}
