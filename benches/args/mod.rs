//! What the benchmarks' command lines share, parsed by clap.
//! `cargo bench --bench NAME -- --help` lists a benchmark's options.

use clap::{Args, Parser};

/// The benchmark this file is compiled into: its `[[bench]]` name in Cargo.toml.
const BENCHMARK: &str = env!("CARGO_CRATE_NAME");

/// The options every benchmark takes.
#[derive(Args)]
pub struct Common {
    /// `cargo bench` passes --bench to targets without the test harness (`harness = false`,
    /// which every benchmark here is): accepted, and ignored.
    #[arg(long, hide = true)]
    #[allow(dead_code)] // set by clap, read by nobody
    bench: bool,
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
