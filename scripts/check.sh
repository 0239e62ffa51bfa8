#!/usr/bin/env bash
# `make check`: what needs no service, in under two minutes once built: format, lint, and the
# tests that start nothing (every crate's unit tests, and the integration binary's property and
# tidy tests). It installs nothing; `make test` runs it first, then everything else.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "format and lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "unit tests of every crate"
cargo test --workspace --lib --bins

step "property and tidy tests (tests/it/properties.rs, tests/it/tidy.rs)"
# Filters on the module paths: the other modules of the binary need PostgreSQL or LocalStack.
cargo test -p login-etl --test it -- properties:: tidy::
