"""What the benchmark plots share: matplotlib without a display, the CSV, axis formats.

Imported by scripts/plot_capacity.py and scripts/plot_shapes.py (run from .venv-bench).
"""

import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402,F401  (re-exported for the plot scripts)
import matplotlib.ticker  # noqa: E402


def read_rows(source: str) -> list[dict[str, str]]:
    with open(source, newline="") as f:
        return list(csv.DictReader(f))


def thousands(axis) -> None:
    """Tick labels like 12,000 instead of 1.2e4."""
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))


def save(fig, out: str) -> None:
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
