"""Writes the benchmarks' tables into a Markdown page from the CSV files the benchmarks write.

    python3 scripts/bench_tables.py docs/benchmarks.md target/ingest.csv [target/shapes.csv ...]

scripts/bench.sh and scripts/bench_shapes.sh run it after their benchmarks (`make bench`). A CSV
named NAME.csv fills every block of the page between

    <!-- bench:NAME [COLUMN=VALUE,...]... [columns=COLUMN,...] -->
    <!-- /bench:NAME -->

with a line naming the CSV and the day it was written, and a table of its rows: all of them, or
those whose COLUMN is one of the VALUEs (as the CSV writes them), with all columns or the ones
`columns=` names, in that order. Everything outside the blocks stays as it is, so the page's text
is edited by hand around them. A CSV without a block on the page, a block without its closing
comment, or a column the CSV does not have is an error, and then the page is not written.

Standard library only, so it runs with any Python 3.11 or later, without a virtualenv.
"""

import argparse
import csv
import datetime
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

# A number as the benchmarks write it: digits, and maybe decimals; no exponent.
NUMBER = re.compile(r"(-?)(\d+)(\.\d+)?")
# What a benchmark writes when there is no figure (Rust prints a NaN so).
NO_FIGURE = "NaN"


class TableError(Exception):
    """The page and the CSVs do not fit together; the message says where."""


@dataclass
class Csv:
    name: str  # the file's name without .csv: the blocks it fills are bench:NAME
    source: str  # as given on the command line, for the line above the table
    written: str  # the day the file was last written, YYYY-MM-DD
    header: list[str]
    rows: list[dict[str, str]]


def read_csv(path: str) -> Csv:
    with open(path, newline="") as f:
        reader = csv.DictReader(f, restval="")
        rows = list(reader)
        header = list(reader.fieldnames or [])
    written = datetime.date.fromtimestamp(os.stat(path).st_mtime).isoformat()
    return Csv(Path(path).stem, path, written, header, rows)


def opening(name: str) -> str:
    return f"<!-- bench:{name} -->"


def closing(name: str) -> str:
    return f"<!-- /bench:{name} -->"


def cell(value: str) -> str:
    """A figure with thousands separators (12,813.3); text as it is, its pipes escaped."""
    if value == NO_FIGURE:
        return "-"
    number = NUMBER.fullmatch(value)
    if number:
        sign, digits, decimals = number.groups()
        return f"{sign}{int(digits):,}{decimals or ''}"
    return value.replace("|", "\\|")


def is_figure(value: str) -> bool:
    return value in ("", NO_FIGURE) or NUMBER.fullmatch(value) is not None


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    # Columns of figures align right, as in the page's hand-written tables.
    align = [
        "---:" if all(is_figure(row[i]) for row in rows) else "---" for i in range(len(header))
    ]
    lines = [
        "| " + " | ".join(name.replace("_", " ") for name in header) + " |",
        "| " + " | ".join(align) + " |",
    ]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def block(table: Csv, options: str, where: str) -> str:
    """The text of one block: `options` are what its opening comment says after bench:NAME."""
    filters: dict[str, set[str]] = {}
    columns = table.header
    for option in options.split():
        key, equals, values = option.partition("=")
        if not equals:
            raise TableError(f"{where}: {option!r} is not COLUMN=VALUE,... or columns=COLUMN,...")
        if key == "columns":
            columns = values.split(",")
            named = columns
        else:
            filters[key] = set(values.split(","))
            named = [key]
        unknown = [c for c in named if c not in table.header]
        if unknown:
            raise TableError(
                f"{where}: {table.source} has no column {', '.join(unknown)} "
                f"(it has {', '.join(table.header)})"
            )
    rows = [
        [row[c] for c in columns]
        for row in table.rows
        if all(row[key] in values for key, values in filters.items())
    ]
    body = markdown_table(columns, rows) if rows else "No such rows in this run."
    return f"\n`{table.source}`, written {table.written}:\n\n{body}\n\n"


def update(page: str, tables: list[Csv], page_name: str = "the page") -> str:
    """`page` with every block of each table's NAME filled from it."""
    for table in tables:
        # Whole lines only: the page's text may quote a marker.
        start = re.compile(
            rf"^<!-- bench:{re.escape(table.name)}(?P<options>(?: +[^ >]+)*) -->\n", re.MULTILINE
        )
        end = closing(table.name)
        end_line = re.compile(rf"^{re.escape(end)}$", re.MULTILINE)
        out, at, blocks = [], 0, 0
        for found in start.finditer(page):
            line = page.count("\n", 0, found.start()) + 1
            where = f"{page_name}:{line}"
            stop = end_line.search(page, found.end())
            if not stop or start.search(page, found.end(), stop.start()):
                raise TableError(f"{where}: {found.group().strip()} has no {end} after it")
            out += [page[at : found.end()], block(table, found.group("options"), where)]
            at = stop.start()
            blocks += 1
        if blocks == 0:
            raise TableError(
                f"{page_name} has no {opening(table.name)} block for {table.source}: "
                f"put one where its table goes, with {end} after it"
            )
        page = "".join(out) + page[at:]
    return page


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="bench_tables.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("page", help="the Markdown page, e.g. docs/benchmarks.md")
    parser.add_argument("csv", nargs="+", help="a benchmark's CSV, e.g. target/shapes.csv")
    args = parser.parse_args(argv)
    page_path, sources = args.page, args.csv
    try:
        page = Path(page_path).read_text()
        updated = update(page, [read_csv(source) for source in sources], page_path)
    except (TableError, OSError) as error:
        print(f"bench_tables.py: {error}", file=sys.stderr)
        return 1
    if updated != page:
        Path(page_path).write_text(updated)
    print(f"{page_path}: tables from {', '.join(sources)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
