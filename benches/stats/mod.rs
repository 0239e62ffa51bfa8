//! The benchmarks' statistics: medians and nearest-rank percentiles.
#![allow(dead_code)] // each benchmark uses a different part of this module

use std::time::Duration;

pub fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile of pooled per-batch latencies, in milliseconds.
pub fn percentile_ms(latencies: &mut [Duration], p: f64) -> f64 {
    if latencies.is_empty() {
        return f64::NAN;
    }
    latencies.sort();
    let rank = ((p / 100.0) * latencies.len() as f64).ceil().max(1.0) as usize;
    latencies[rank.min(latencies.len()) - 1].as_secs_f64() * 1e3
}
