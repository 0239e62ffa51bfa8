"""Draws docs/shapes.png from the Lambda shapes benchmark's CSV (benches/shapes/main.rs).

    .venv-bench/bin/python scripts/plot_shapes.py [target/shapes.csv] [docs/shapes.png]

Two panels against the Lambda memory size (the CPU cap), at one round trip to the database:
records per second per instance (log scale) and cost per million logins, Rust against the
Python anchor, one line per batch size. scripts/bench_shapes.sh runs it.
"""

import sys

from plotting import plt, read_rows, save, thousands

FUNCTIONS = {"rust": ("login-etl (Rust)", "-"), "python": ("Python anchor", "--")}
COLORS = {10: "tab:blue", 100: "tab:orange", 1000: "tab:green"}
MARKERS = {10: "o", 100: "s", 1000: "^"}
RTT_MS = "0.5"


def main() -> None:
    source = sys.argv[1] if len(sys.argv) > 1 else "target/shapes.csv"
    out = sys.argv[2] if len(sys.argv) > 2 else "docs/shapes.png"
    rows = read_rows(source)
    rtts = sorted({r["rtt_ms"] for r in rows if r["kind"] in FUNCTIONS}, key=float)
    rtt = RTT_MS if RTT_MS in rtts else rtts[-1]
    rows = [r for r in rows if r["kind"] in FUNCTIONS and r["rtt_ms"] == rtt]
    if not rows:
        sys.exit(f"{source} has no rust or python rows")

    series: dict[tuple[str, int], list[tuple[int, float, float]]] = {}
    for r in rows:
        key = (r["kind"], int(r["batch_size"]))
        series.setdefault(key, []).append(
            (int(r["memory_mb"]), float(r["records_per_s"]), float(r["usd_per_million"]))
        )

    fig, (rate, cost) = plt.subplots(1, 2, figsize=(12, 4.8))
    for (kind, size), points in sorted(series.items()):
        points.sort()
        label, linestyle = FUNCTIONS[kind]
        style = dict(
            linestyle=linestyle,
            marker=MARKERS.get(size, "x"),
            color=COLORS.get(size),
            label=f"{label}, batch {size}",
        )
        x = [p[0] for p in points]
        rate.plot(x, [p[1] for p in points], **style)
        cost.plot(x, [p[2] for p in points], **style)
    memory = sorted({int(r["memory_mb"]) for r in rows})
    for ax, title, ylabel in (
        (rate, "Records per second per instance", "records/s (log scale)"),
        (cost, "Cost per million logins (arm64 price)", "USD per million (log scale)"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(memory, [str(m) for m in memory])
        ax.set_xlabel("Lambda memory size, MB (CPU capped in proportion, 1,769 MB = 1 vCPU)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    thousands(rate.yaxis)
    rate.legend(fontsize=8)
    fig.suptitle(
        f"login-etl against the Python function: {rtt} ms round trip to PostgreSQL, "
        "CPU capped with cgroup v1, x86_64 2-core machine",
        fontsize=10,
    )
    save(fig, out)


if __name__ == "__main__":
    main()
