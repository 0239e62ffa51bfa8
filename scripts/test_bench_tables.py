"""Tests of scripts/bench_tables.py: a small CSV rendered into a page with markers.

Run by `make test` (scripts/test.sh, with pytest); alone, standard library only:
    python3 -m unittest scripts/test_bench_tables.py
"""

import contextlib
import datetime
import io
import os
import sys
import tempfile
import textwrap
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_tables  # noqa: E402

# The CSV's modification time, noon local time: the day the line above the table gives.
WRITTEN = time.mktime(datetime.datetime(2026, 11, 26, 12, 0).timetuple())
DAY = "2026-11-26"

CSV = textwrap.dedent(
    """\
    kind,batch_size,records_per_s,usd_per_million
    rust,10,3603.4,0.020560
    python,10,248.0,0.026800
    copy-baseline,1000,12345,NaN
    "rust, insert",100,13441.0,0.002130
    """
)

PAGE = textwrap.dedent(
    """\
    # Benchmarks

    Hand-written text, kept | as it is, quoting `<!-- bench:shapes -->`.

    <!-- bench:shapes -->
    | the old table |
    <!-- /bench:shapes -->

    Between the blocks.

    <!-- bench:shapes kind=rust,python columns=kind,records_per_s -->
    old figures
    <!-- /bench:shapes -->

    The end, no newline after it."""
)


class BenchTables(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.csv = Path(self.dir.name, "shapes.csv")
        self.csv.write_text(CSV)
        os.utime(self.csv, (WRITTEN, WRITTEN))
        self.page = Path(self.dir.name, "benchmarks.md")
        self.page.write_text(PAGE)

    def render(self, page=PAGE):
        return bench_tables.update(page, [bench_tables.read_csv(str(self.csv))], "benchmarks.md")

    def test_the_tables_replace_the_blocks_and_nothing_else(self):
        source = str(self.csv)
        expected = textwrap.dedent(
            f"""\
            # Benchmarks

            Hand-written text, kept | as it is, quoting `<!-- bench:shapes -->`.

            <!-- bench:shapes -->

            `{source}`, written {DAY}:

            | kind | batch size | records per s | usd per million |
            | --- | ---: | ---: | ---: |
            | rust | 10 | 3,603.4 | 0.020560 |
            | python | 10 | 248.0 | 0.026800 |
            | copy-baseline | 1,000 | 12,345 | - |
            | rust, insert | 100 | 13,441.0 | 0.002130 |

            <!-- /bench:shapes -->

            Between the blocks.

            <!-- bench:shapes kind=rust,python columns=kind,records_per_s -->

            `{source}`, written {DAY}:

            | kind | records per s |
            | --- | ---: |
            | rust | 3,603.4 |
            | python | 248.0 |

            <!-- /bench:shapes -->

            The end, no newline after it."""
        )
        self.assertEqual(self.render(), expected)

    def test_a_second_run_changes_nothing(self):
        once = self.render()
        self.assertEqual(self.render(once), once)

    def test_a_filter_that_matches_nothing_says_so(self):
        page = "<!-- bench:shapes kind=java -->\n<!-- /bench:shapes -->\n"
        self.assertIn("No such rows in this run.", self.render(page))

    def test_a_missing_marker_is_an_error_naming_it(self):
        page = PAGE.replace("bench:shapes", "bench:capacity")
        with self.assertRaises(bench_tables.TableError) as raised:
            self.render(page)
        self.assertIn("<!-- bench:shapes -->", str(raised.exception))
        self.assertIn(str(self.csv), str(raised.exception))

    def test_a_missing_closing_marker_is_an_error_naming_it(self):
        page = PAGE.replace("| the old table |\n<!-- /bench:shapes -->", "| the old table |")
        with self.assertRaises(bench_tables.TableError) as raised:
            self.render(page)
        self.assertIn("benchmarks.md:5", str(raised.exception))
        self.assertIn("<!-- /bench:shapes -->", str(raised.exception))

    def test_an_unknown_column_is_an_error_naming_it(self):
        page = PAGE.replace("columns=kind,", "columns=language,")
        with self.assertRaisesRegex(bench_tables.TableError, "no column language"):
            self.render(page)

    def test_the_command_leaves_the_page_alone_on_an_error(self):
        other = Path(self.dir.name, "partitions.csv")
        other.write_text("batch_size,ratio\n100,1.00\n")
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            status = bench_tables.main([str(self.page), str(self.csv), str(other)])
        self.assertEqual(status, 1)
        self.assertIn("<!-- bench:partitions -->", stderr.getvalue())
        self.assertEqual(self.page.read_text(), PAGE)

    def test_the_command_writes_the_page(self):
        with contextlib.redirect_stdout(io.StringIO()):
            status = bench_tables.main([str(self.page), str(self.csv)])
        self.assertEqual(status, 0)
        self.assertEqual(self.page.read_text(), self.render())


if __name__ == "__main__":
    unittest.main()
