# Shared set-up for the scripts (test.sh, check.sh, demo.sh, demo-sqs.sh, bench.sh, bench_shapes.sh) and the Makefile: source it, then call what you need.
# Everything installs into the repo (.venv*, ignored by git) so a fresh machine needs nothing else.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARGO_LAMBDA_VERSION="1.9.2"
CLEANUPS=()

# DEMO ONLY (make demo, make demo-sqs): a made-up key so the demos need no secret. Masks made
# with it protect nothing. The deployed function has no default: it reads MASKING_KEY from
# Secrets Manager (template.yaml) and refuses to start without it.
DEMO_MASKING_KEY="demo-only-masking-key--not-a-secret--never-deploy"

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
  # The directory is made, and its stop registered, before the start: a Ctrl-C while PostgreSQL
  # starts (initdb takes a second or two) still stops the server and removes the directory.
  local dir exports
  dir="$(mktemp -d "${TMPDIR:-/tmp}/login-etl-pg.XXXXXX")"
  on_exit "\"$ROOT/scripts/pg.sh\" stop \"$dir\""
  exports="$(PG_START_DIR="$dir" "$ROOT/scripts/pg.sh" start)"
  eval "$exports"
  echo "throw-away PostgreSQL on port $PGPORT ($PG_TEST_DIR)"
}

# Debian's PgBouncer, which the fleet tests start in front of PostgreSQL (tests/it/fleet.rs).
ensure_pgbouncer() {
  if [ -x /usr/sbin/pgbouncer ]; then
    return
  fi
  echo "installing pgbouncer from Debian"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq pgbouncer
  # The package's own service is not used: each test starts a PgBouncer of its own.
  $sudo service pgbouncer stop >/dev/null 2>&1 || true
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

# The deployable zip for arm64 (target/lambda/login-etl/bootstrap.zip), as `make build` and
# `sam build` make it: OpenSSL is built from source for aarch64 (a few minutes the first time).
build_arm64_zip() {
  rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 || rustup target add aarch64-unknown-linux-gnu
  ensure_cargo_lambda
  cargo lambda build --release --arm64 --output-format zip
}

# AWS SAM CLI and cfn-lint (with aws-sam-translator) in .venv-sam, for the offline template
# checks; pinned together because sam pins the cfn-lint it lints with.
# moto's server: the Secrets Manager API (with IAM permissions) that tests/it/secrets.rs reads.
ensure_moto() {
  ensure_pip_tool .venv-moto python3 "moto[server]==5.2.5"
}

ensure_sam_tools() {
  ensure_pip_tool .venv-sam python3 "aws-sam-cli==1.170.0" "cfn-lint==1.58.0"
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

# LocalStack on the host, without Docker: its SQS, and its own Lambda service and SQS event source
# mapping, which run functions as local processes through the project's runtime-executor plugin
# (localstack/executor, selected by LAMBDA_RUNTIME_EXECUTOR=local). localstack-core 2026.3 runs on
# Python 3.13 (not on 3.11 or 3.12) and breaks with the newest cbor2, cryptography and pyOpenSSL,
# hence the pins; pytest runs the plugin's own tests.
LOCALSTACK_PACKAGES=("localstack-core[runtime]==2026.3.0" "cbor2<6" "cryptography<45" "pyopenssl<25" "service_identity<25" "pytest==8.4.2")

python313() {
  local candidate
  for candidate in "$(pyenv root 2>/dev/null)/versions/3.13.0/bin/python3" "$(command -v python3.13 || true)"; do
    if [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  echo "LocalStack needs Python 3.13 (pyenv's 3.13.0 or python3.13 on PATH); none was found" >&2
  return 1
}

# LocalStack, with the executor plugin installed from localstack/executor. The plugin's stamp is
# a checksum of its files, so an edited plugin is installed again.
ensure_localstack() {
  local python stamp
  python="$(python313)"
  ensure_pip_tool .venv-localstack "$python" "${LOCALSTACK_PACKAGES[@]}"
  stamp="$ROOT/.venv-localstack/.executor-$(cd "$ROOT" && find localstack/executor -type f \
    -not -path '*/__pycache__/*' -not -path '*/.pytest_cache/*' -not -path '*.egg-info/*' \
    -not -path '*/build/*' | LC_ALL=C sort | xargs cat | cksum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ]; then
    echo "installing the local runtime executor (localstack/executor) into .venv-localstack"
    rm -f "$ROOT"/.venv-localstack/.executor-*
    "$ROOT/.venv-localstack/bin/pip" install --quiet --disable-pip-version-check --no-deps \
      --force-reinstall "$ROOT/localstack/executor"
    touch "$stamp"
  fi
}

# Runs an arm64 function here (x86_64): qemu-user and an aarch64 glibc, both from Debian.
ensure_qemu_arm64() {
  if [ "$(uname -m)" = aarch64 ] || { [ -x /usr/bin/qemu-aarch64-static ] && [ -d /usr/aarch64-linux-gnu/lib ]; }; then
    return
  fi
  echo "installing qemu-user-static and libc6-arm64-cross from Debian (to run the arm64 zip)"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq qemu-user-static libc6-arm64-cross
}

# Starts LocalStack (SQS, Lambda with the local executor, and what Lambda needs: S3 keeps code,
# STS gives the function its credentials, IAM, Logs) on a free loopback port, its state in a temp
# dir, and registers its stop. Exports LOCALSTACK_ENDPOINT_URL, and SQS_ENDPOINT_URL (the same
# address) for what needs only its SQS. The functions' output goes to LOGIN_ETL_LOG_DIR when set.
start_localstack() {
  local state port i
  state="$(mktemp -d "${TMPDIR:-/tmp}/login-etl-localstack.XXXXXX")"
  on_exit "rm -rf \"$state\""
  port="$(free_port)"
  mkdir -p "$state/fs" "$state/tmp" "$state/config" "$state/home"
  # setsid: a session of its own. The executor starts each function in a process group of its own
  # within it, so stop_localstack ends whatever is left by the session.
  (
    export FILESYSTEM_ROOT="$state/fs" TMPDIR="$state/tmp" CONFIG_DIR="$state/config" HOME="$state/home"
    export GATEWAY_LISTEN="127.0.0.1:$port" GATEWAY_SERVER=hypercorn LOCALSTACK_HOST="127.0.0.1:$port"
    export SQS_ENDPOINT_STRATEGY=path DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 DNS_ADDRESS=0
    export SERVICES=lambda,sqs,s3,sts,iam,logs LAMBDA_RUNTIME_EXECUTOR=local
    # An idle mapping polls at least once a second (default: backs off up to 10 s).
    export LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_EMPTY_POLL_SEC=1
    export LAMBDA_LOCAL_EXECUTOR_LOG_DIR="${LOGIN_ETL_LOG_DIR:-}"
    exec setsid "$ROOT/.venv-localstack/bin/python" -m localstack.runtime.main >"$state/localstack.log" 2>&1
  ) &
  local pid=$!
  on_exit "stop_localstack $pid \"$state\""
  for ((i = 0; i < 600; i++)); do
    if python3 - "$port" 2>/dev/null <<'PY'; then
import json, sys, urllib.request
health = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/_localstack/health", timeout=1))
sys.exit(0 if all(health["services"].get(s) in ("available", "running") for s in ("sqs", "lambda")) else 1)
PY
      export LOCALSTACK_ENDPOINT_URL="http://127.0.0.1:$port" SQS_ENDPOINT_URL="http://127.0.0.1:$port"
      LOCALSTACK_LOG="$state/localstack.log"
      echo "LocalStack (Lambda with the local executor, SQS) on $LOCALSTACK_ENDPOINT_URL ($state)"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "LocalStack did not become ready on port $port; its log:" >&2
  tail -n 40 "$state/localstack.log" >&2
  return 1
}

# LocalStack unless LOCALSTACK_ENDPOINT_URL already names one (started with the local executor).
ensure_localstack_running() {
  if [ -n "${LOCALSTACK_ENDPOINT_URL:-}" ]; then
    export SQS_ENDPOINT_URL="${SQS_ENDPOINT_URL:-$LOCALSTACK_ENDPOINT_URL}"
    echo "using LOCALSTACK_ENDPOINT_URL=$LOCALSTACK_ENDPOINT_URL from the environment"
    return
  fi
  ensure_localstack
  start_localstack
}

# LocalStack stops its functions' environments on SIGTERM (each gets SIGTERM, then SIGKILL from
# the executor); hypercorn itself sometimes ignores SIGTERM for 30 s and more. So: ask, give the
# environments time to stop, then SIGKILL everything left in LocalStack's session, functions too.
stop_localstack() {
  local pid="$1" state="$2" i
  kill -TERM -- "-$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  pkill -KILL -s "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$state"
}

# The function under `cargo lambda watch` on 127.0.0.1:PORT, its output in LOG, with the caller's
# environment (e.g. `MASKING_KEY=... start_function_watch "$PORT" "$LOG"`); stopped on exit.
start_function_watch() {
  local port="$1" log="$2"
  (exec setsid cargo lambda watch --ignore-changes -A 127.0.0.1 -P "$port" >"$log" 2>&1) &
  local pid=$!
  on_exit "stop_session $pid"
  wait_for_port "$port" 60 "cargo lambda watch"
}

# cargo-lambda runs the function in a process group of its own: stop the whole session.
stop_session() {
  local leader="$1" i
  kill -TERM "$leader" 2>/dev/null || true
  for ((i = 0; i < 30; i++)); do
    [ -z "$(ps -o pid= -s "$leader")" ] && return 0
    sleep 0.1
  done
  ps -o pid= -s "$leader" | xargs -r kill -KILL 2>/dev/null || true
}

# Prints rows of user_logins_readable for the demos: show_sample_rows COUNT|all
show_sample_rows() {
  local shown="$1" limit=""
  [ "$shown" = all ] || limit="LIMIT $shown"
  step "user_logins_readable, a sample: app_version decoded, masks cut to 10 of their 64 hex digits"
  echo "A user on several rows is a returning user: each row is a separate login message (its own"
  echo "messageId), not a redelivery."
  psql -X -q "$DATABASE_URL" -P pager=off -P null='(null)' -c "
    SELECT left(user_id, 8) || '…' AS user_id, device_type,
           left(masked_ip, 10) || '…' AS masked_ip,
           left(masked_device_id, 10) || '…' AS masked_device_id,
           locale, app_version, create_date
    FROM user_logins_readable
    ORDER BY message_id
    $limit"
}
