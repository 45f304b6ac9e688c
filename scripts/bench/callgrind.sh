#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: repeatable to a fraction of a
# percent even while other processes load the machine, unlike requests/s.
#
# Each server runs under `valgrind --tool=callgrind`; for each scenario the counters are zeroed,
# wrk sends requests over one connection for CALLGRIND_SECONDS, the counters are dumped, and the
# total instruction count of the whole process (every thread: runtime, pool, background tasks)
# is divided by the requests wrk saw answered. Scenarios:
#   hello    plain axum (examples/hello.rs)
#   healthz  GET /healthz                      (SQLite)
#   valid    GET /api/v1/me with a valid key   (SQLite, cache hit)
#   verify   GET /api/v1/verify with that key  (forward auth, SQLite, cache hit)
#   limited  GET /api/v1/me with a key limited to 1,000,000 a minute (SQLite, cache hit): what
#            a rate limit adds (the default deployment gives every key one)
#   policy   GET /api/v1/verify with a key with every policy (allowlist, credits, metadata,
#            external id; SQLite, cache hit), as bench.sh's policy scenario
#   miss     GET /api/v1/me, cache off          (PostgreSQL over TLS, HEFFL_CACHE_CAPACITY=0)
#
# Settings: CALLGRIND_SECONDS (5), CALLGRIND_BIN (target/release/heffl-api), CALLGRIND_SCENARIOS
# ("hello healthz valid verify miss"), CALLGRIND_PG_SSLMODE (prefer), BENCH_SKIP_BUILD, BENCH_PG_*.
# Results go to stdout as a table; the callgrind.out files stay in $WORK with BENCH_KEEP_WORK=1
# (open them with callgrind_annotate for the per-function costs).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

CALLGRIND_SECONDS="${CALLGRIND_SECONDS:-5}"
CALLGRIND_SCENARIOS="${CALLGRIND_SCENARIOS:-hello healthz valid verify miss}"
CALLGRIND_PG_SSLMODE="${CALLGRIND_PG_SSLMODE:-prefer}"
BIN="${CALLGRIND_BIN:-$BIN}"
PORT=18085
BASE="http://127.0.0.1:$PORT"
command -v valgrind >/dev/null || die "valgrind is required"

# grind_start LOGNAME CMD...: starts CMD under callgrind with the environment GRIND_ENV
# (counting from the start; zeroed before each scenario); sets SERVER_PID.
GRIND_ENV=()
grind_start() {
    local name=$1
    shift
    (cd "$WORK" && exec env "${GRIND_ENV[@]}" valgrind --tool=callgrind \
        --callgrind-out-file="$WORK/callgrind.$name.%p" "$@") >>"$WORK/$name.log" 2>&1 &
    SERVER_PID=$!
}

wait_for() {
    for _ in $(seq 1 600); do
        curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null && return
        kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$WORK"/*.log >&2; die "server exited"; }
        sleep 0.2
    done
    die "$1 did not answer"
}

# count SCENARIO URL [KEY]: prints "scenario requests instructions instructions/request".
count() {
    local scenario=$1 url=$2 key=${3:-} result requests file before
    callgrind_control -z "$SERVER_PID" >/dev/null 2>&1
    result="$(run_wrk 1 "$CALLGRIND_SECONDS" "$url" "$key")"
    requests="${result%% *}"
    before="$(ls "$WORK"/callgrind.*."$SERVER_PID"* 2>/dev/null | wc -l)"
    callgrind_control -d "$scenario" "$SERVER_PID" >/dev/null 2>&1
    # The dump is written asynchronously by the next thread to run.
    for _ in $(seq 1 100); do
        (($(ls "$WORK"/callgrind.*."$SERVER_PID"* 2>/dev/null | wc -l) > before)) && break
        sleep 0.1
    done
    file="$(ls -t "$WORK"/callgrind.*."$SERVER_PID"* | head -1)"
    local total
    total="$(awk '/^summary:/ { print $2 }' "$file")"
    printf '| %s | %s | %s | %.0f |\n' "$scenario" "$requests" "$total" "$((total / requests))"
}

stop_grind() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

ensure_tools
build_release
echo "| scenario | requests | instructions | instructions/request |"
echo "|---|--:|--:|--:|"
for scenario in $CALLGRIND_SCENARIOS; do
    case "$scenario" in
    hello)
        grind_start hello "$HELLO_BIN" "127.0.0.1:$PORT"
        wait_for "$BASE/hello"
        run_wrk 1 1 "$BASE/hello" >/dev/null
        count hello "$BASE/hello"
        stop_grind
        ;;
    healthz | valid | verify | limited | policy)
        if [[ -z "${SQLITE_READY:-}" ]]; then
            env=(DATABASE_URL="sqlite://$WORK/grind.db" HEFFL_LOG_FORMAT=json RUST_LOG=warn
                HEFFL_RATE_LIMIT_PER_MINUTE=0 HEFFL_AUTH_FAILURES_PER_MINUTE=0
                HEFFL_BIND="127.0.0.1:$PORT" HEFFL_METRICS_BIND="127.0.0.1:$BENCH_METRICS_PORT")
            bootstrap "${env[@]}"
            GRIND_ENV=("${env[@]}")
            grind_start sqlite "$BIN" serve
            wait_for "$BASE/healthz"
            VALID="$(create_api_key "$BASE")"
            LIMITED="$(create_api_key "$BASE" 1000000)"
            POLICY="$(create_policy_key "$BASE")"
            run_wrk 1 1 "$BASE/api/v1/me" "$VALID" >/dev/null
            run_wrk 1 1 "$BASE/healthz" >/dev/null
            SQLITE_READY=1
        fi
        case "$scenario" in
        healthz) count healthz "$BASE/healthz" ;;
        valid)
            expect_status "$BASE/api/v1/me" 200 "$VALID"
            count valid "$BASE/api/v1/me" "$VALID"
            ;;
        verify)
            expect_status "$BASE/api/v1/verify" 200 "$VALID"
            count verify "$BASE/api/v1/verify" "$VALID"
            ;;
        limited)
            expect_status "$BASE/api/v1/me" 200 "$LIMITED"
            count limited "$BASE/api/v1/me" "$LIMITED"
            ;;
        policy)
            expect_status "$BASE/api/v1/verify" 200 "$POLICY"
            count policy "$BASE/api/v1/verify" "$POLICY"
            ;;
        esac
        ;;
    miss)
        [[ -n "$SERVER_PID" ]] && stop_grind
        fresh_database heffl_grind
        url="$(pg_url heffl_grind)?sslmode=$CALLGRIND_PG_SSLMODE"
        env=(DATABASE_URL="$url" HEFFL_LOG_FORMAT=json RUST_LOG=warn HEFFL_CACHE_CAPACITY=0
            HEFFL_RATE_LIMIT_PER_MINUTE=0 HEFFL_AUTH_FAILURES_PER_MINUTE=0
            HEFFL_BIND="127.0.0.1:$PORT" HEFFL_METRICS_BIND="127.0.0.1:$BENCH_METRICS_PORT")
        bootstrap "${env[@]}"
        GRIND_ENV=("${env[@]}")
        grind_start pg "$BIN" serve
        wait_for "$BASE/healthz"
        KEY="$(create_api_key "$BASE")"
        expect_status "$BASE/api/v1/me" 200 "$KEY"
        run_wrk 1 2 "$BASE/api/v1/me" "$KEY" >/dev/null
        count miss "$BASE/api/v1/me" "$KEY"
        stop_grind
        ;;
    *) die "unknown scenario $scenario" ;;
    esac
done
[[ -n "$SERVER_PID" ]] && stop_grind
true
