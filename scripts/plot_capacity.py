"""Draws docs/capacity.png from the capacity benchmark's CSV (benches/capacity/main.rs).

    .venv-bench/bin/python scripts/plot_capacity.py [target/capacity.csv] [docs/capacity.png]

Two panels against the number of concurrent instances: aggregate records/s, and p99 batch
latency; one line per set-up (direct, PgBouncer) and batch size. scripts/bench.sh runs it.
"""

import sys

from plotting import plt, read_rows, save, thousands

LABELS = {"direct": "direct, prepared", "pgbouncer": "PgBouncer (transaction, pool 4), unnamed"}
STYLES = {"direct": "-", "pgbouncer": "--"}
MARKERS = {10: "o", 100: "s"}
COLORS = {10: "tab:blue", 100: "tab:orange"}


def main() -> None:
    source = sys.argv[1] if len(sys.argv) > 1 else "target/capacity.csv"
    out = sys.argv[2] if len(sys.argv) > 2 else "docs/capacity.png"
    rows = [r for r in read_rows(source) if r["setup"] in LABELS]
    if not rows:
        sys.exit(f"{source} has no direct or pgbouncer rows")

    series: dict[tuple[str, int], list[tuple[int, float, float]]] = {}
    for r in rows:
        key = (r["setup"], int(r["batch_size"]))
        series.setdefault(key, []).append(
            (int(r["instances"]), float(r["records_per_s"]), float(r["p99_ms"]))
        )
    runs, seconds = rows[0]["runs"], rows[0]["seconds"]

    fig, (rate, p99) = plt.subplots(1, 2, figsize=(12, 4.8))
    for (setup, size), points in sorted(series.items()):
        points.sort()
        x = [p[0] for p in points]
        label = f"{LABELS[setup]}, batch {size}"
        style = dict(
            linestyle=STYLES[setup],
            marker=MARKERS.get(size, "^"),
            color=COLORS.get(size),
            label=label,
        )
        rate.plot(x, [p[1] for p in points], **style)
        p99.plot(x, [p[2] for p in points], **style)
    instances = sorted({int(r["instances"]) for r in rows})
    for ax, title, ylabel in (
        (rate, "Aggregate throughput", "records/s (sum over instances)"),
        (p99, "Batch latency, p99", "ms"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_xticks(instances, [str(n) for n in instances])
        ax.set_xlabel("concurrent instances (one connection each)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    thousands(rate.yaxis)
    rate.legend(fontsize=8)
    fig.suptitle(
        f"login-etl capacity: durable PostgreSQL on a 2-core machine, medians of {runs} runs of {seconds} s",
        fontsize=10,
    )
    save(fig, out)


if __name__ == "__main__":
    main()
