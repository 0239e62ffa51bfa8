//! What the benchmarks' command lines share, parsed by clap, and the CSV files they write:
//! `make bench` renders docs/benchmarks.md's tables from those (scripts/bench_tables.py).
//! `cargo bench --bench NAME -- --help` lists a benchmark's options.
#![allow(dead_code)] // each benchmark uses a different part of this module

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use clap::{Args, Parser};

/// The benchmark this file is compiled into: its `[[bench]]` name in Cargo.toml.
const BENCHMARK: &str = env!("CARGO_CRATE_NAME");

/// The options every benchmark takes.
#[derive(Args)]
pub struct Common {
    /// Where to write the results as CSV, which `make bench` renders into docs/benchmarks.md
    #[arg(
        long,
        value_name = "PATH",
        default_value = concat!("target/", env!("CARGO_CRATE_NAME"), ".csv")
    )]
    pub csv: PathBuf,
    /// `cargo bench` passes --bench to targets without the test harness (`harness = false`,
    /// which every benchmark here is): accepted, and ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

impl Common {
    /// Another CSV of the run, beside `--csv`: `target/ingest.csv` -> `target/ingest-binary.csv`.
    pub fn csv_beside(&self, table: &str) -> PathBuf {
        let stem = self
            .csv
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(BENCHMARK);
        self.csv.with_file_name(format!("{stem}-{table}.csv"))
    }
}

/// This process's arguments as `T`; the usage line shows how the benchmark is run rather than
/// its binary's hashed name under target/.
pub fn parse<T: Parser>() -> T {
    let mut command = T::command()
        .name(BENCHMARK)
        .bin_name(concat!(
            "cargo bench --bench ",
            env!("CARGO_CRATE_NAME"),
            " --"
        ))
        // The last of an option given twice counts: the scripts put their own options first
        // (`--csv target/capacity.csv`), and what a user adds after them wins.
        .args_override_self(true);
    let matches = command.get_matches_mut();
    T::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut command).exit())
}

/// A CSV field: quoted when it holds a comma, a quote or a line break, as CSV readers expect.
pub fn field(text: &str) -> Cow<'_, str> {
    if text.contains([',', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", text.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(text)
    }
}

/// Writes a CSV file, making its folder if need be, and says where.
pub fn write_csv(path: &Path, contents: &str) {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
    }
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    println!("wrote {}", path.display());
}
