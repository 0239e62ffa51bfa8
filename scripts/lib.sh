# Shared set-up for scripts/test.sh and scripts/demo.sh: source it, then call what you need.
# Everything installs into the repo (.venv*, ignored by git) so a fresh machine needs nothing else.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARGO_LAMBDA_VERSION="1.9.2"
CLEANUPS=()

step() { printf '\n==> %s\n' "$*"; }

# Runs the registered clean-ups (newest first) on exit, whatever the exit status.
cleanup_on_exit() {
  local i
  for ((i = ${#CLEANUPS[@]} - 1; i >= 0; i--)); do eval "${CLEANUPS[$i]}" || true; done
}
trap cleanup_on_exit EXIT
on_exit() { CLEANUPS+=("$1"); }

# A throw-away PostgreSQL unless DATABASE_URL already names one.
ensure_postgres() {
  if [ -n "${DATABASE_URL:-}" ]; then
    echo "using DATABASE_URL from the environment"
    return
  fi
  eval "$("$ROOT/scripts/pg.sh" start)"
  on_exit "\"$ROOT/scripts/pg.sh\" stop \"$PG_TEST_DIR\""
  echo "throw-away PostgreSQL on port $PGPORT ($PG_TEST_DIR)"
}

# A tool from PyPI in its own venv under the repo: ensure_pip_tool VENV PYTHON PACKAGE...
ensure_pip_tool() {
  local venv="$ROOT/$1" python="$2"
  shift 2
  local stamp="$venv/.installed-$(echo "$*" | cksum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ]; then
    echo "installing $* into $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
    touch "$stamp"
  fi
}

# cargo-lambda (runtime emulator, invoke, build) from PyPI; puts it on PATH.
ensure_cargo_lambda() {
  ensure_pip_tool .venv python3 "cargo-lambda==$CARGO_LAMBDA_VERSION"
  export PATH="$ROOT/.venv/bin:$PATH"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until a TCP port on 127.0.0.1 accepts connections: wait_for_port PORT SECONDS WHAT
wait_for_port() {
  local port="$1" seconds="$2" what="$3" i
  for ((i = 0; i < seconds * 10; i++)); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "$what did not listen on port $port within ${seconds}s" >&2
  return 1
}
