//! Lambda shapes: the real release binary, and the Python function most users would write
//! instead, under the CPU a Lambda memory size gets and a network round trip to the database.
//!
//! `make bench-shapes` (or `make bench`) runs it against a durable throw-away PostgreSQL:
//! `cargo bench --bench shapes -- [--quick] [--csv target/shapes.csv] [--memory 128,256]
//! [--rtt 0,0.5] [--sizes 10,100] [--python .venv-anchor/bin/python]` (`-- --help` lists the
//! options).
//!
//! For each round trip (a delay proxy in this process, `proxy.rs`) and memory size (a cgroup v1
//! CPU quota per function, `cgroup.rs`), one fresh process of each function (its cold start
//! measured capped); then for each batch size, warm-up batches and measured batches, each handed
//! out by a stand-in Runtime API (`benches/runtime_api`) and timed from handing out the event to
//! receiving the response. The contenders take turns batch by batch, in a rotating order, each
//! writing to a database of its own (truncated before each batch size), so a noisy moment of this
//! shared 2-core machine hits them alike and the ratios between them hold:
//! - `rust`: the release binary as deployed (prepared statements: INSERT below 100 rows, binary
//!   COPY from 100);
//! - `rust-insert`: the same binary with PREPARED_STATEMENTS=false, which writes every batch with
//!   one INSERT (unnamed statements take no COPY): what the COPY threshold is weighed against;
//! - `python`: `benches/python_anchor` (powertools BatchProcessor, psycopg executemany);
//! - `copy-baseline`: a binary COPY of exactly the rows the functions store, already masked,
//!   from this (uncapped) process through the same proxy: the database's limit.
//!
//! Every function gets the same SqsEvent bytes (`benches/workload`), and after each cell the
//! table's contents are hashed so Rust and Python are checked to store the same rows.
//!
//! For `rust`, each cell's time budget too (`budget.rs`): where each millisecond of a batch went,
//! from the function's own `batch time budget` lines and the round trips the proxy counted
//! (written beside the CSV: `-budget.csv`).

#[path = "../args/mod.rs"]
mod args;
mod budget;
#[path = "../ingest/candidates.rs"]
#[allow(dead_code)] // only the COPY baseline of the ingest benchmark's candidates is used here
mod candidates;
mod cgroup;
#[path = "../database/mod.rs"]
mod database;
mod proxy;
#[path = "../runtime_api/mod.rs"]
mod runtime_api;
#[path = "../stats/mod.rs"]
mod stats;
#[path = "../workload/mod.rs"]
mod workload;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use clap::Parser;
use login_etl_core::batch::{plan_batch, LoginRow};
use login_etl_core::mask::Masker;
use time::OffsetDateTime;
use tokio::time::Instant;
use tokio_postgres::Client;

use cgroup::CpuCap;
use proxy::DelayProxy;
use runtime_api::{Answer, Function};
use stats::{median, percentile_ms};

const BINARY: &str = env!("CARGO_BIN_EXE_login-etl");
const BENCH_DATABASE: &str = "login_etl_shapes";
/// Lambda's arm64 price in us-east-1 (the first 7.5 billion GB-seconds a month), and per request.
/// docs/benchmarks.md says where and when it was read.
const PRICE_PER_GB_SECOND: f64 = 0.000_013_333_4;
const PRICE_PER_REQUEST: f64 = 0.20 / 1e6;
const WARM_UP_BATCHES: usize = 3;
/// Lambda's default timeout is far above any batch here; the deadline only has to be real.
const INVOCATION_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Rust,
    RustInsert,
    Python,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Rust => "rust",
            Kind::RustInsert => "rust-insert",
            Kind::Python => "python",
        }
    }
}

/// Lambda shapes: the release binary, and the Python function most users would write instead,
/// under the CPU of each Lambda memory size (a cgroup v1 quota: root) and a round trip to the
/// database (a delay proxy), with a binary COPY of the same rows as the database's limit.
///
/// Needs DATABASE_URL and the Python anchor; `make bench-shapes` provides both and runs it.
#[derive(Parser)]
struct Options {
    /// A quick look: memory sizes 256 and 1769 MB, a 0.5 ms round trip (unless --memory or --rtt
    /// say otherwise), and a fifth of the batches
    #[arg(long)]
    quick: bool,
    /// Lambda memory sizes in MB, comma-separated: each function gets the CPU share of each
    #[arg(
        long,
        value_name = "MB,...",
        value_delimiter = ',',
        default_value = "128,256,512,1024,1769",
        default_value_if("quick", "true", "256,1769")
    )]
    memory: Vec<u32>,
    /// Round trips to the database the proxy adds, in ms, comma-separated
    #[arg(
        long = "rtt",
        value_name = "MS,...",
        value_delimiter = ',',
        default_value = "0,0.5,1",
        default_value_if("quick", "true", "0.5")
    )]
    rtt_ms: Vec<f64>,
    /// Batch sizes, comma-separated
    #[arg(
        long,
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "10,100,1000"
    )]
    sizes: Vec<usize>,
    /// The Python that runs the anchor (benches/python_anchor), with its packages installed
    #[arg(
        long,
        value_name = "PATH",
        default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv-anchor/bin/python")
    )]
    python: PathBuf,
    #[command(flatten)]
    common: args::Common,
}

impl Options {
    /// Measured batches per cell: enough for a median and a p99 (with fewer than 100 batches
    /// the p99 is the slowest), few enough that Python at 128 MB (about 1 s per 1,000-record
    /// batch) keeps the whole run near 20 minutes on 2 cores. The same for every function, so
    /// all see the same records.
    fn batches(&self, size: usize) -> usize {
        let full = match size {
            0..=10 => 200,
            11..=100 => 60,
            _ => 15,
        };
        if self.quick {
            (full / 5).max(5)
        } else {
            full
        }
    }
}

/// The events of one batch size: warm-up and measured batches, serialized once, so every
/// function is handed the same bytes.
struct Workload {
    size: usize,
    events: Vec<Vec<u8>>,
    records: Vec<Vec<SqsMessage>>,
    /// The rows each batch newly stores, masked: the COPY baseline's input.
    new_rows: Vec<Vec<LoginRow>>,
}

impl Workload {
    fn new(size: usize, batches: usize) -> Workload {
        let records = workload::records(size as u64, size * (WARM_UP_BATCHES + batches));
        let records: Vec<Vec<SqsMessage>> = records.chunks(size).map(<[_]>::to_vec).collect();
        let events = records
            .iter()
            .map(|batch| {
                let mut event = SqsEvent::default();
                event.records = batch.clone();
                serde_json::to_vec(&event).expect("serialize the event")
            })
            .collect();
        let masker = Masker::new(workload::MASKING_KEY.as_bytes()).expect("masker");
        let today = OffsetDateTime::now_utc().date();
        let mut stored: HashSet<String> = HashSet::new();
        let new_rows = records
            .iter()
            .map(|batch| {
                plan_batch(batch, &masker, today)
                    .expect("generated records have ids")
                    .rows
                    .into_iter()
                    .filter(|row| stored.insert(row.message_id.clone()))
                    .collect()
            })
            .collect();
        Workload {
            size,
            events,
            records,
            new_rows,
        }
    }
}

/// What one cell measured.
struct Cell {
    kind: &'static str,
    memory_mb: u32,
    rtt_ms: f64,
    size: usize,
    durations: Vec<Duration>,
    records: usize,
    failures: usize,
    /// The round trips the proxy counted for each measured batch.
    round_trips: Vec<u64>,
    peak_rss_mib: f64,
    cold_start_ms: f64,
    /// Spawn to the function's first connection to the database, as the proxy saw it.
    before_connect_ms: f64,
    rows_digest: String,
}

impl Cell {
    fn new(kind: &'static str, memory_mb: u32, rtt_ms: f64, size: usize) -> Cell {
        Cell {
            kind,
            memory_mb,
            rtt_ms,
            size,
            durations: Vec::new(),
            records: 0,
            failures: 0,
            round_trips: Vec::new(),
            peak_rss_mib: f64::NAN,
            cold_start_ms: f64::NAN,
            before_connect_ms: f64::NAN,
            rows_digest: String::new(),
        }
    }

    fn busy(&self) -> f64 {
        self.durations.iter().map(Duration::as_secs_f64).sum()
    }
    fn records_per_s(&self) -> f64 {
        self.records as f64 / self.busy()
    }
    /// Lambda bills each invocation's duration rounded up to the millisecond.
    fn billed_ms(&self) -> Vec<f64> {
        self.durations
            .iter()
            .map(|d| (d.as_secs_f64() * 1e3).ceil())
            .collect()
    }
    fn cost_per_million(&self) -> f64 {
        if self.kind == "copy-baseline" {
            return f64::NAN; // not a Lambda function
        }
        let gb_seconds: f64 =
            self.billed_ms().iter().sum::<f64>() / 1e3 * f64::from(self.memory_mb) / 1024.0;
        let cost =
            gb_seconds * PRICE_PER_GB_SECOND + self.durations.len() as f64 * PRICE_PER_REQUEST;
        cost / self.records as f64 * 1e6
    }

    fn csv_line(&mut self) -> String {
        let billed = self.billed_ms();
        let billed_mean = billed.iter().sum::<f64>() / billed.len() as f64;
        format!(
            "{},{},{},{},{},{},{:.0},{:.3},{:.3},{:.2},{:.6},{:.1},{:.1},{:.1},{},{}",
            self.kind,
            self.memory_mb,
            self.rtt_ms,
            self.size,
            self.durations.len(),
            self.records,
            self.records_per_s(),
            percentile_ms(&mut self.durations, 50.0),
            percentile_ms(&mut self.durations, 99.0),
            billed_mean,
            self.cost_per_million(),
            self.peak_rss_mib,
            self.cold_start_ms,
            self.before_connect_ms,
            self.failures,
            self.rows_digest,
        )
    }
}

const CSV_HEADER: &str = "kind,memory_mb,rtt_ms,batch_size,batches,records,records_per_s,p50_ms,p99_ms,billed_ms_mean,usd_per_million,peak_rss_mib,cold_start_ms,before_connect_ms,failures,rows_digest";

/// `url` with its host and port replaced by `address`.
fn with_address(url: &str, address: SocketAddr) -> String {
    let authority = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority..];
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let host_start = rest[..end].rfind('@').map_or(0, |i| i + 1);
    format!(
        "{}{}{address}{}",
        &url[..authority],
        &rest[..host_start],
        &rest[end..]
    )
}

/// The server's TCP address, which the proxies forward to.
async fn server_address(admin: &Client) -> SocketAddr {
    let row = admin
        .query_one("SELECT host(inet_server_addr()), inet_server_port()", &[])
        .await
        .expect("the server's address");
    let host: Option<String> = row.get(0);
    let port: Option<i32> = row.get(1);
    let (Some(host), Some(port)) = (host, port) else {
        panic!("the shapes benchmark needs a TCP connection to PostgreSQL, not a Unix socket");
    };
    format!("{host}:{port}").parse().expect("address")
}

/// The round trip a query sees through `proxy`: median of `SELECT 1`, minus the same direct.
async fn added_round_trip_ms(direct_url: &str, proxy_url: &str) -> (f64, f64) {
    let mut medians = Vec::new();
    for url in [direct_url, proxy_url] {
        let client = database::connect(url).await;
        let statement = client.prepare("SELECT 1").await.expect("prepare");
        let mut times = Vec::new();
        for _ in 0..200 {
            let started = Instant::now();
            client.query_one(&statement, &[]).await.expect("SELECT 1");
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        medians.push(median(&times));
    }
    (medians[1], medians[1] - medians[0])
}

/// Tunes the proxy's delay until `SELECT 1` through it takes `rtt_ms` longer than direct: the
/// hand-offs inside the proxy take time of their own. With 0 the proxy adds only those.
async fn calibrate(proxy: &DelayProxy, rtt_ms: f64, url: &str, proxy_url: &str) -> (f64, f64) {
    let mut measured = added_round_trip_ms(url, proxy_url).await;
    if rtt_ms == 0.0 {
        return measured;
    }
    for _ in 0..6 {
        let error_ms = rtt_ms - measured.1;
        let one_way_ms = (proxy.one_way().as_secs_f64() * 1e3 + error_ms / 2.0).max(0.0);
        proxy.set_one_way(Duration::from_secs_f64(one_way_ms / 1e3));
        measured = added_round_trip_ms(url, proxy_url).await;
    }
    measured
}

/// Where one contender writes: a database of its own, so that the contenders can take turns
/// batch by batch (each against the same table state) and a noisy moment hits them alike.
struct Target {
    /// Direct, uncapped: truncation and digests.
    admin: Client,
    url: String,
}

impl Target {
    async fn new(server_url: &str, database: &str) -> Target {
        let url = database::fresh_database(server_url, database).await;
        Target {
            admin: database::connect(&url).await,
            url,
        }
    }

    async fn truncate(&self) {
        self.admin
            .batch_execute("TRUNCATE user_logins")
            .await
            .expect("truncate user_logins");
    }

    /// Row count and a hash of every stored value, to check that two functions stored the same.
    async fn rows_digest(&self) -> String {
        let row = self
            .admin
            .query_one(
                "SELECT count(*)::text || ':' || coalesce(md5(string_agg(concat_ws('|', user_id, \
                 device_type, masked_ip, masked_device_id, locale, app_version, create_date, \
                 message_id, mask_key_id), ',' ORDER BY message_id)), '') FROM user_logins",
                &[],
            )
            .await
            .expect("digest");
        row.get(0)
    }
}

const KINDS: [Kind; 3] = [Kind::Rust, Kind::RustInsert, Kind::Python];
/// The contenders of a round: the functions of `KINDS`, then the COPY baseline.
const COPY: usize = KINDS.len();

struct Bench {
    options: Options,
    /// One per function kind (`KINDS`), so each is capped on its own.
    caps: Vec<CpuCap>,
    /// One per function kind, then the COPY baseline's.
    targets: Vec<Target>,
    /// One per round trip, with its measured added round trip.
    proxies: Vec<(f64, DelayProxy)>,
    workloads: Vec<Workload>,
    csv: String,
    /// The rust function's time budget per cell (`budget::csv_header`).
    budget_csv: String,
    /// rows_digest per batch size of the rust and python functions: they must agree.
    digests: BTreeMap<usize, HashSet<String>>,
}

impl Bench {
    fn proxied(&self, target: usize, rtt: usize) -> String {
        with_address(&self.targets[target].url, self.proxies[rtt].1.address)
    }

    fn command(&self, k: usize, memory_mb: u32, url: &str) -> tokio::process::Command {
        let kind = KINDS[k];
        let mut command = match kind {
            Kind::Rust | Kind::RustInsert => runtime_api::lambda_command(BINARY, memory_mb),
            Kind::Python => {
                let mut command = runtime_api::lambda_command(&self.options.python, memory_mb);
                let bootstrap = concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/benches/python_anchor/bootstrap.py"
                );
                command.arg(bootstrap);
                command
            }
        };
        command
            .env("DATABASE_URL", url)
            .env("MASKING_KEY", workload::MASKING_KEY);
        if kind == Kind::RustInsert {
            command.env("PREPARED_STATEMENTS", "false");
        }
        let procs = self.caps[k].procs_file().expect("open cgroup.procs");
        cgroup::join_at_exec(&mut command, procs);
        command
    }

    /// One memory size at one round trip: a fresh process of each function (cold start
    /// measured capped), then for each batch size the same batches handed to each function and
    /// copied by the baseline, taking turns batch by batch in a rotating order.
    async fn round(&mut self, memory_mb: u32, rtt: usize) {
        let rtt_ms = self.proxies[rtt].0;
        let mut functions = Vec::new();
        let mut started = Vec::new();
        let mut rust_log = None;
        for (k, kind) in KINDS.iter().enumerate() {
            self.caps[k]
                .set_memory(memory_mb)
                .expect("set the CPU quota");
            let mut command = self.command(k, memory_mb, &self.proxied(k, rtt));
            if *kind == Kind::Rust {
                // Its `batch time budget` lines (one per batch, at debug level) into a file.
                let (log, stdout, stderr) = budget::Log::create(kind.name());
                command
                    .env("AWS_LAMBDA_LOG_LEVEL", "debug")
                    .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
                    .stdout(stdout)
                    .stderr(stderr);
                rust_log = Some(log);
            }
            let function = Function::start(command, Duration::from_secs(120))
                .await
                .unwrap_or_else(|e| panic!("{} did not start: {e:?}", kind.name()));
            let before_connect = self.proxies[rtt]
                .1
                .first_connection_since(function.spawned)
                .map_or(f64::NAN, |at| (at - function.spawned).as_secs_f64() * 1e3);
            started.push((function.cold_start.as_secs_f64() * 1e3, before_connect));
            functions.push(function);
        }
        let copy_client = database::connect(&self.proxied(COPY, rtt)).await;
        let copy = candidates::Copy::prepare(&copy_client).await;

        for w in 0..self.workloads.len() {
            for target in &self.targets {
                target.truncate().await;
            }
            let workload = &self.workloads[w];
            let mut cells: Vec<Cell> = (0..=COPY)
                .map(|c| {
                    let kind = KINDS.get(c).map_or("copy-baseline", |k| k.name());
                    let mut cell = Cell::new(kind, memory_mb, rtt_ms, workload.size);
                    if let Some(&(cold, before_connect)) = started.get(c) {
                        cell.cold_start_ms = cold;
                        cell.before_connect_ms = before_connect;
                    }
                    cell
                })
                .collect();
            for (i, event) in workload.events.iter().enumerate() {
                for turn in 0..=COPY {
                    let c = (turn + i) % (COPY + 1);
                    let round_trips_before = self.proxies[rtt].1.round_trips();
                    let (duration, failures) = if c == COPY {
                        let started = Instant::now();
                        copy.write(&copy_client, &workload.new_rows[i]).await;
                        (started.elapsed(), 0)
                    } else {
                        invoke(&mut functions[c], event).await
                    };
                    if i >= WARM_UP_BATCHES {
                        let round_trips = self.proxies[rtt].1.round_trips() - round_trips_before;
                        cells[c].round_trips.push(round_trips);
                        cells[c].durations.push(duration);
                        cells[c].records += workload.records[i].len();
                        cells[c].failures += failures;
                    }
                }
            }
            for (c, cell) in cells.iter_mut().enumerate() {
                cell.rows_digest = self.targets[c].rows_digest().await;
                if let Some(function) = functions.get(c) {
                    cell.peak_rss_mib = function.peak_rss_mib();
                    if KINDS[c] != Kind::RustInsert {
                        self.digests
                            .entry(cell.size)
                            .or_default()
                            .insert(cell.rows_digest.clone());
                    }
                }
            }
            if let Some(log) = &mut rust_log {
                let rust = &cells[0];
                let copy = &cells[COPY];
                let budget = budget::CellBudget::read(
                    log,
                    WARM_UP_BATCHES,
                    &rust.durations,
                    &rust.round_trips,
                );
                let line = budget.csv_line(
                    memory_mb,
                    rtt_ms,
                    workload.size,
                    copy.busy() * 1e3 / copy.durations.len() as f64,
                    budget::mean(&copy.round_trips),
                );
                writeln!(self.budget_csv, "{line}").unwrap();
            }
            let ratios = |c: usize| cells[c].busy() / cells[0].busy();
            println!(
                "|  | same batches, busy time: rust-insert / rust {:.2}, python / rust {:.1}, rust x COPY (COPY / rust) {:.2} |",
                ratios(1),
                ratios(2),
                ratios(COPY)
            );
            for cell in &mut cells {
                self.record(cell);
            }
        }
        for function in functions {
            function.stop().await;
        }
    }

    fn record(&mut self, cell: &mut Cell) {
        let line = cell.csv_line();
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.5} | {:.1} | {:.1} | {:.1} |",
            cell.kind,
            cell.memory_mb,
            cell.rtt_ms,
            cell.size,
            cell.records_per_s(),
            percentile_ms(&mut cell.durations, 50.0),
            percentile_ms(&mut cell.durations, 99.0),
            cell.cost_per_million(),
            cell.peak_rss_mib,
            cell.cold_start_ms,
            cell.before_connect_ms,
        );
        writeln!(self.csv, "{line}").unwrap();
    }
}

/// Hands `event` to `function`; returns the duration and the number of failures it reported.
async fn invoke(function: &mut Function, event: &[u8]) -> (Duration, usize) {
    let invocation = function.invoke(event, INVOCATION_DEADLINE).await;
    let Answer::Response(body) = invocation.answer else {
        panic!("a function failed a batch: {:?}", invocation.answer);
    };
    let failures = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["batchItemFailures"].as_array().map(Vec::len))
        .expect("an SqsBatchResponse");
    (invocation.duration, failures)
}

fn main() {
    let options: Options = args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(shapes(options));
}

async fn shapes(options: Options) {
    let server_url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL must name a PostgreSQL server; `make bench-shapes` starts a durable one"
        )
    });
    assert!(
        options.python.exists(),
        "{} is missing: `make bench-shapes` installs the Python anchor into .venv-anchor",
        options.python.display()
    );
    let mut targets = Vec::new();
    for name in ["rust", "rust_insert", "python", "copy"] {
        targets.push(Target::new(&server_url, &format!("{BENCH_DATABASE}_{name}")).await);
    }
    let upstream = server_address(&targets[0].admin).await;
    let caps = KINDS
        .iter()
        .map(|kind| {
            CpuCap::create(kind.name())
                .expect("create a cgroup under /sys/fs/cgroup/cpu (root needed)")
        })
        .collect();
    println!(
        "CPU caps: cgroup v1, cpu.cfs_quota_us = {} us x memory / {} MB per {} us period, one cgroup per function",
        cgroup::PERIOD.as_micros(),
        cgroup::ONE_VCPU_MB,
        cgroup::PERIOD.as_micros()
    );
    let mut proxies = Vec::new();
    for &rtt_ms in &options.rtt_ms {
        let proxy = DelayProxy::start(upstream, Duration::from_secs_f64(rtt_ms / 2e3));
        let url = &targets[0].url;
        let (through, added) =
            calibrate(&proxy, rtt_ms, url, &with_address(url, proxy.address)).await;
        println!(
            "proxy for a {rtt_ms} ms round trip: SELECT 1 takes {through:.3} ms through it, {added:.3} ms more than direct (median of 200; {:.3} ms added each way)",
            proxy.one_way().as_secs_f64() * 1e3
        );
        proxies.push((rtt_ms, proxy));
    }
    let workloads = options
        .sizes
        .iter()
        .map(|&size| Workload::new(size, options.batches(size)))
        .collect();
    let mut bench = Bench {
        options,
        caps,
        targets,
        proxies,
        workloads,
        csv: format!("{CSV_HEADER}\n"),
        budget_csv: format!("{}\n", budget::csv_header()),
        digests: BTreeMap::new(),
    };

    println!("\nrecords/s = records / busy time (the sum of the batch durations); the COPY baseline runs uncapped in the benchmark's process");
    println!("| function | memory MB | RTT ms | batch | records/s | p50 ms | p99 ms | USD per million | peak RSS MiB | cold start ms | before connect ms |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let memory = bench.options.memory.clone();
    for rtt in 0..bench.proxies.len() {
        for &memory_mb in &memory {
            bench.round(memory_mb, rtt).await;
        }
    }

    let mut same = true;
    for (size, digests) in &bench.digests {
        if digests.len() != 1 {
            same = false;
            println!("batch {size}: the functions stored different rows: {digests:?}");
        }
    }
    if same {
        println!(
            "\nRust and Python stored the same rows (same count and digest) for every batch size."
        );
    }
    args::write_csv(&bench.options.common.csv, &bench.csv);
    args::write_csv(
        &bench.options.common.csv_beside("budget"),
        &bench.budget_csv,
    );
    println!(
        "cost: arm64 ${PRICE_PER_GB_SECOND} per GB-s (each batch's duration rounded up to the ms) + ${:.2} per million requests",
        PRICE_PER_REQUEST * 1e6
    );
}
