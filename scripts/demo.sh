#!/usr/bin/env bash
# `make demo`: the main job end to end on this machine. It installs cargo-lambda (into .venv),
# starts a throw-away PostgreSQL, runs the real login-etl binary under `cargo lambda watch`, sends
# every file of events/ with `cargo lambda invoke`, prints each answer and the rows that arrived,
# and stops everything it started, also on Ctrl-C or failure.
#   DEMO_ROWS=all make demo    # print every row, not the first few
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
trap 'exit 130' INT TERM # bash skips the EXIT trap (our clean-up) on a signal unless we exit

ROWS_SHOWN="${DEMO_ROWS:-12}"

on_exit 'echo; echo "==> cleaned up: function and throw-away PostgreSQL stopped"'

step "set up: cargo-lambda, a throw-away PostgreSQL, the login-etl binary"
ensure_cargo_lambda
# The demo writes sample rows, so never into a database named by the caller's environment.
unset DATABASE_URL
ensure_postgres
cargo build --bin login-etl

STATE="$(mktemp -d "${TMPDIR:-/tmp}/login-etl-demo.XXXXXX")"
on_exit "rm -rf \"$STATE\""
LOG="$STATE/function.log"
PORT="$(free_port)"

show_log_tail() {
  echo "--- last lines of the function's log ---" >&2
  tail -n 30 "$LOG" >&2 || true
}

step "start login-etl under cargo lambda watch on 127.0.0.1:$PORT (AUTO_MIGRATE=true, demo-only MASKING_KEY)"
(
  export DATABASE_URL MASKING_KEY="$DEMO_MASKING_KEY" AUTO_MIGRATE=true AWS_LAMBDA_LOG_FORMAT=JSON
  exec setsid cargo lambda watch --ignore-changes -A 127.0.0.1 -P "$PORT" >"$LOG" 2>&1
) &
WATCH_PID=$!
on_exit "stop_session $WATCH_PID"
wait_for_port "$PORT" 60 "cargo lambda watch" || { show_log_tail; exit 1; }

# invoke FILE [--redelivery]: sends one event file and prints the answer. A function that fails
# to start leaves `cargo lambda invoke` waiting, hence the timeout, and the watch on the log for
# cargo-lambda's report that the function exited.
unexpected=0
invoke() {
  local file="$1" offset pid status=0
  offset="$(stat -c %s "$LOG")"
  timeout 120 cargo lambda invoke -A 127.0.0.1 -P "$PORT" login-etl --data-file "$file" \
    >"$STATE/response.json" 2>"$STATE/invoke.err" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    if tail -c "+$((offset + 1))" "$LOG" | grep -q "command exited"; then
      kill "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  wait "$pid" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "  $(basename "$file"): the invoke failed or timed out:" >&2
    cat "$STATE/response.json" "$STATE/invoke.err" >&2
    show_log_tail
    exit 1
  fi
  python3 scripts/demo_report.py "$file" "$STATE/response.json" "$LOG" "$offset" "${@:2}" \
    || unexpected=$((unexpected + 1))
}

step "send events/ through cargo lambda invoke (each answer is the function's SqsBatchResponse)"
files=(events/clean-batch.json events/stream-*.json events/bad-input.json events/fifo-batch.json)
for file in events/*.json; do # any other file added to events/ goes last
  case " ${files[*]} " in *" $file "*) ;; *) [ "$file" = events/expected.json ] || files+=("$file") ;; esac
done
for file in "${files[@]}"; do
  invoke "$file"
done

step "SQS delivers at least once: events/stream-01.json again, same messageIds"
before="$(psql -X -At "$DATABASE_URL" -c 'SELECT count(*) FROM user_logins')"
invoke events/stream-01.json --redelivery
after="$(psql -X -At "$DATABASE_URL" -c 'SELECT count(*) FROM user_logins')"
echo "  user_logins had $before rows before and has $after after: a redelivery is a success, not a second row"

show_sample_rows "$ROWS_SHOWN"
[ "$ROWS_SHOWN" = all ] || echo "($ROWS_SHOWN of $after rows; DEMO_ROWS=all make demo prints every row)"

step "the same rows counted by app_version"
psql -X -q "$DATABASE_URL" -P pager=off -c "
  SELECT app_version, count(*) AS rows, count(*) FILTER (WHERE locale IS NULL) AS null_locale,
         count(DISTINCT user_id) AS users, count(DISTINCT masked_device_id) AS devices,
         count(DISTINCT masked_ip) AS ips
  FROM user_logins_readable
  GROUP BY app_version
  ORDER BY string_to_array(app_version, '.')::int[] DESC"

if [ "$unexpected" -ne 0 ]; then
  echo "$unexpected batch(es) did not end as events/expected.json says" >&2
  exit 1
fi
echo "Every batch ended as events/expected.json says."
