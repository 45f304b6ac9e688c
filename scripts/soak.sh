#!/usr/bin/env bash
# Soak: the release server under steady mixed traffic for a bounded time (10 minutes by
# default), sampling its RSS, open file descriptors, database pool size and key-cache size every
# 10 s, and reporting whether each stays flat (last third against middle third, within 10%).
# Not part of CI. Results: docs/soak.md.
#
#   scripts/soak.sh                      # PostgreSQL (a fresh database on BENCH_PG_*), 10 min
#   SOAK_SECONDS=120 SOAK_DB=sqlite scripts/soak.sh
#
# SOAK_SECONDS (600), SOAK_RATE requests/s (400), SOAK_DB (postgres|sqlite), SOAK_OUT (a file
# to copy the samples to); BENCH_PG_*, BENCH_SKIP_BUILD and BENCH_SERVER_CPU as in
# scripts/bench.sh. Exits 1 if a series is not flat.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bench/lib.sh"

SOAK_SECONDS="${SOAK_SECONDS:-600}"
SOAK_RATE="${SOAK_RATE:-400}"
SOAK_DB="${SOAK_DB:-postgres}"
SAMPLE_EVERY=10
PORT=$((20000 + RANDOM % 20000))
METRICS_PORT=$((PORT + 1))

for tool in curl python3 taskset; do command -v "$tool" >/dev/null || die "$tool is required"; done
build_release

case "$SOAK_DB" in
postgres)
    command -v psql >/dev/null || die "psql is required for SOAK_DB=postgres"
    DB_NAME="heffl_soak_$$"
    fresh_database "$DB_NAME"
    DATABASE_URL="$(pg_url "$DB_NAME")"
    ;;
sqlite) DATABASE_URL="sqlite://$WORK/soak.db" ;;
*) die "SOAK_DB must be postgres or sqlite" ;;
esac

ENV=(DATABASE_URL="$DATABASE_URL" HEFFL_RATE_LIMIT_PER_MINUTE=0 HEFFL_AUTH_FAILURES_PER_MINUTE=0
    HEFFL_LOGIN_ATTEMPTS_PER_MINUTE=1000 HEFFL_METRICS_BIND="127.0.0.1:$METRICS_PORT"
    RUST_LOG=warn)
(cd "$WORK" && env "${ENV[@]}" "$BIN" migrate) >/dev/null
bootstrap "${ENV[@]}"
start_server "$PORT" "${ENV[@]}"
BASE="http://127.0.0.1:$PORT"

login_body="$(python3 -c 'import json,sys; print(json.dumps({"email": "bench@example.com", "password": sys.argv[1]}))' "$PASSWORD")"
TOKEN="$(curl -fsS --max-time 10 -H 'content-type: application/json' -d "$login_body" \
    "$BASE/app/v1/auth/login" | json_field token)"
for i in $(seq 1 20); do
    curl -fsS --max-time 10 -H 'content-type: application/json' -H "authorization: Bearer $TOKEN" \
        -d "{\"name\":\"soak $i\",\"rateLimitPerMinute\":0}" \
        "$BASE/app/v1/workspaces/$WS_ID/api-keys" | json_field key
done >"$WORK/keys"

# /metrics is on its own listener (HEFFL_METRICS_BIND) where the server has one; else on the API.
metrics_text() {
    curl -fsS --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics" 2>/dev/null ||
        curl -fsS --max-time 5 "$BASE/metrics"
}

log "soak: $SOAK_DB, $SOAK_RATE requests/s for $SOAK_SECONDS s (pid $SERVER_PID)"
python3 "$BENCH_DIR/../soak/traffic.py" "$BASE" "$WS_ID" "$TOKEN" "$WORK/keys" "$SOAK_SECONDS" "$SOAK_RATE" \
    >"$WORK/traffic.json" &
WRK_PID=$!

SAMPLES="$WORK/samples.tsv"
printf 'seconds\trss_kb\topen_fds\tpool_connections\tcache_entries\n' >"$SAMPLES"
start=$SECONDS
while kill -0 "$WRK_PID" 2>/dev/null; do
    sleep "$SAMPLE_EVERY"
    kill -0 "$SERVER_PID" 2>/dev/null || die "the server died; see $WORK/server.log"
    text="$(metrics_text)"
    pool="$(awk '$1 ~ /^heffl_db_pool_connections\{/ { v += $2 } END { print v + 0 }' <<<"$text")"
    cache="$(awk '$1 == "heffl_key_cache_entries" { v = $2 } END { print v + 0 }' <<<"$text")"
    fds="$(find "/proc/$SERVER_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)"
    printf '%s\t%s\t%s\t%s\t%s\n' "$((SECONDS - start))" "$(rss_kb)" "$fds" "$pool" "$cache" | tee -a "$SAMPLES" >&2
done
wait "$WRK_PID"
WRK_PID=""
[[ -n "${SOAK_OUT:-}" ]] && cp "$SAMPLES" "$SOAK_OUT"

echo "traffic (action status: count): $(cat "$WORK/traffic.json")"
echo
python3 "$BENCH_DIR/../soak/report.py" "$SAMPLES"
