"""Draws docs/budget.png from the shapes benchmark's time budget (target/shapes-budget.csv).

    .venv-bench/bin/python scripts/plot_budget.py [target/shapes-budget.csv] [docs/budget.png]

One stacked bar per cell (memory size, batch size) at one round trip: the mean time of each part
of the Rust function's invocation (benches/shapes/budget.rs), with the binary COPY of the same
rows through the same proxy below it. scripts/bench_shapes.sh runs it.
"""

import sys

from plotting import plt, read_rows, save

# The CSV's parts in stack order, with their legend labels.
PARTS = [
    ("runtime_api_ms", "Runtime API: event in, response out"),
    ("decode_ms", "decode the event's JSON"),
    ("plan_ms", "plan: parse, validate, mask"),
    ("connect_ms", "connect"),
    ("lookup_ms", "BEGIN + deadline + lookup of redelivered ids (1 round trip)"),
    ("copy_start_ms", "COPY start (with the round trip when there is no lookup)"),
    ("copy_rows_ms", "COPY: encode the rows"),
    ("copy_end_ms", "COPY end: send, server stores (1 round trip)"),
    ("insert_ms", "INSERT (1 round trip)"),
    ("commit_ms", "COMMIT: WAL flush"),
    ("report_ms", "log, metrics, response"),
]
RTT_MS = "0.5"


def main() -> None:
    source = sys.argv[1] if len(sys.argv) > 1 else "target/shapes-budget.csv"
    out = sys.argv[2] if len(sys.argv) > 2 else "docs/budget.png"
    rows = read_rows(source)
    rtts = sorted({r["rtt_ms"] for r in rows}, key=float)
    if not rtts:
        sys.exit(f"{source} has no rows")
    rtt = RTT_MS if RTT_MS in rtts else rtts[-1]
    rows = sorted(
        (r for r in rows if r["rtt_ms"] == rtt),
        key=lambda r: (int(r["batch_size"]), int(r["memory_mb"])),
    )

    # Top to bottom: each cell's function bar (its parts), then its COPY bar.
    bars: list[tuple[str, list[float]]] = []
    for r in rows:
        cell = f"{r['memory_mb']} MB, batch {r['batch_size']}"
        bars.append((f"{cell}: login-etl", [float(r[part]) for part, _ in PARTS]))
        bars.append((f"{cell}: binary COPY", [float(r["copy_baseline_ms"])]))

    fig, ax = plt.subplots(figsize=(12, 0.55 * len(bars) + 2.8))
    y = list(range(len(bars)))[::-1]
    # tab20 in pairs of a dark and a light tone: the dark ones first, so neighbours differ.
    tones = plt.get_cmap("tab20").colors
    colors = tones[0::2] + tones[1::2]
    functions = [(yy, parts) for yy, (_, parts) in zip(y, bars) if len(parts) == len(PARTS)]
    for i, (_, label) in enumerate(PARTS):
        ax.barh(
            [yy for yy, _ in functions],
            [parts[i] for _, parts in functions],
            left=[sum(parts[:i]) for _, parts in functions],
            color=colors[i],
            label=label,
        )
    copies = [(yy, parts[0]) for yy, (_, parts) in zip(y, bars) if len(parts) == 1]
    ax.barh(
        [yy for yy, _ in copies],
        [ms for _, ms in copies],
        color="lightgray",
        hatch="//",
        edgecolor="gray",
        label="binary COPY, autocommit (2 round trips)",
    )
    for yy, (_, parts) in zip(y, bars):
        ax.text(sum(parts), yy, f" {sum(parts):.1f} ms", va="center", fontsize=8)
    labels = [label for label, _ in bars]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("mean time per batch, ms")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(
        f"Where a batch's time goes: the release binary under each memory size's CPU, "
        f"{rtt} ms round trip to PostgreSQL",
        fontsize=10,
    )
    save(fig, out)


if __name__ == "__main__":
    main()
