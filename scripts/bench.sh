#!/usr/bin/env bash
# Throughput and latency of heffl-api next to a plain axum server, on SQLite and PostgreSQL.
#
# For each database: a release build of `heffl-api serve` pinned to one CPU, the load generator
# (wrk, one thread) pinned to another; a fresh workspace and a key without a rate limit; then,
# at each connection count of BENCH_CONNS, BENCH_SECONDS of each scenario:
#   hello      GET /hello from examples/hello.rs: plain axum 0.8, one route, a small JSON, no
#              layers; pinned to the same CPU as heffl-api (the baseline every row is a ratio to)
#   healthz    GET /healthz
#   valid      GET /api/v1/me with the key
#   verify     GET /api/v1/verify with the key (forward auth, docs/api.md §13): should cost what valid does
#   policy     GET /api/v1/verify with a key that has the policies of docs/api.md §14: an
#              allowlist, a trillion credits (spent in leased blocks, no write per request),
#              metadata and an external id (goal: at least 0.80x plain axum)
#   malformed  the same key with its last character changed (bad checksum: refused before any
#              lookup, so the cache-miss counter must not move)
#   unknown    a well-formed key with a valid checksum that no server issued
#   limited    GET /api/v1/me with a key whose rate limit it never comes near (1,000,000 a
#              minute, the most a key may have; a fresh key for each slice, since a minute
#              of slices at 64 connections can exceed it): the per-key limiter's fast path. On a BENCH_DBS entry NAME+redis the
#              server shares limits through Redis (BENCH_REDIS_URL, a fresh key prefix), so
#              `limited` on sqlite+redis against `limited` on sqlite is the cost of sharing
#              (docs/api.md §12 asks for at least 0.95x).
# The seconds are cut into BENCH_ROUNDS slices and the scenarios interleaved round by round
# (the order rotating), so that a burst of other load on the machine hits every scenario alike
# instead of ruining one; the slices are then pooled (see bench/aggregate.py). BENCH_ROUNDS=1
# measures each scenario in one go.
#
# The table: requests/s, p50, p99, requests/s and p99 as ratios to plain axum's at the same
# connection count in the same run, and the server's CPU time per request (which other load
# disturbs far less than throughput) with the ratio it implies; then the goals in docs/dev/performance.md
# checked against those ratios, the cache-miss counter around the malformed slices and the
# server's memory at the end of each database.
#
# Settings (environment): BENCH_SECONDS (10), BENCH_ROUNDS (5), BENCH_CONNS ("64 1"),
# BENCH_DBS ("sqlite postgres sqlite+redis"), BENCH_REDIS_URL (redis://127.0.0.1:6379), BENCH_WARMUP (2, seconds),
# BENCH_PORT (18080), BENCH_HELLO_PORT (18090), BENCH_METRICS_PORT (19464, heffl-api's HEFFL_METRICS_BIND),
# BENCH_SERVER_CPU (0), BENCH_CLIENT_CPU (1), BENCH_SKIP_BUILD (0), BENCH_BIN (another build to
# measure, with BENCH_SKIP_BUILD=1), BENCH_PG_HOST/PORT/USER
# (127.0.0.1/5432/postgres), BENCH_PG_XACT (1: also count PostgreSQL transactions over one more
# malformed run of BENCH_SECONDS; adds ~35 s). The PostgreSQL database heffl_bench is created
# fresh and dropped at the end. Example of a quick run:
#   BENCH_SECONDS=2 BENCH_ROUNDS=1 BENCH_PG_XACT=0 scripts/bench.sh
set -euo pipefail
source "$(dirname "$0")/bench/lib.sh"

BENCH_SECONDS="${BENCH_SECONDS:-10}"
BENCH_ROUNDS="${BENCH_ROUNDS:-5}"
BENCH_CONNS="${BENCH_CONNS:-64 1}"
BENCH_DBS="${BENCH_DBS:-sqlite postgres sqlite+redis}"
BENCH_REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
BENCH_WARMUP="${BENCH_WARMUP:-2}"
BENCH_PORT="${BENCH_PORT:-18080}"
BENCH_HELLO_PORT="${BENCH_HELLO_PORT:-18090}"
BENCH_PG_XACT="${BENCH_PG_XACT:-1}"
BASE="http://127.0.0.1:$BENCH_PORT"
SLICE=$((BENCH_SECONDS / BENCH_ROUNDS))
((SLICE >= 1)) || die "BENCH_SECONDS must be at least BENCH_ROUNDS"
SCENARIOS=(hello healthz valid verify policy malformed unknown limited)
MISS='heffl_key_cache_total{result="miss"}'
SLICES="$WORK/slices.tsv"
NOTES="$WORK/notes.txt"
: >"$SLICES"
: >"$NOTES"

note() {
    echo "$*" >>"$NOTES"
    log "$*"
}

pg_xacts() {
    psql_admin -d postgres -c "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'heffl_bench'"
}

# scenario_slice DB CONNS ROUND SCENARIO
scenario_slice() {
    local db=$1 conns=$2 round=$3 scenario=$4
    case "$scenario" in
    hello) measure "$scenario" "$db" "$conns" "$round" "$HELLO_URL" ;;
    healthz) measure "$scenario" "$db" "$conns" "$round" "$BASE/healthz" ;;
    valid) measure "$scenario" "$db" "$conns" "$round" "$BASE/api/v1/me" "$VALID" ;;
    verify) measure "$scenario" "$db" "$conns" "$round" "$BASE/api/v1/verify" "$VALID" ;;
    policy) measure "$scenario" "$db" "$conns" "$round" "$BASE/api/v1/verify" "$POLICY" ;;
    malformed) measure "$scenario" "$db" "$conns" "$round" "$BASE/api/v1/me" "$MALFORMED" ;;
    unknown) measure "$scenario" "$db" "$conns" "$round" "$BASE/api/v1/me" "$UNKNOWN" ;;
    limited)
        LIMITED="$(create_api_key "$BASE" 1000000)"
        measure "$scenario" "$db" "$conns" "$round" "$BASE/api/v1/me" "$LIMITED"
        ;;
    esac
}

bench_database() {
    local db=$1 url shared=()
    if [[ "$db" == *+redis ]]; then
        shared=(HEFFL_REDIS_URL="$BENCH_REDIS_URL" HEFFL_REDIS_PREFIX="heffl-bench-$$-$RANDOM:")
    fi
    case "${db%+redis}" in
    # A database file of its own per entry: sqlite and sqlite+redis each bootstrap afresh.
    sqlite) url="sqlite://$WORK/bench-${db//+/-}.db" ;;
    postgres)
        fresh_database heffl_bench
        url="$(pg_url heffl_bench)"
        ;;
    *) die "unknown database '$db' in BENCH_DBS" ;;
    esac
    local env=(DATABASE_URL="$url" HEFFL_LOG_FORMAT=json RUST_LOG=warn
        HEFFL_RATE_LIMIT_PER_MINUTE=0 HEFFL_AUTH_FAILURES_PER_MINUTE=0 "${shared[@]}")
    log "$db: bootstrap and start"
    bootstrap "${env[@]}"
    start_server "$BENCH_PORT" "${env[@]}"
    VALID="$(create_api_key "$BASE")"
    LIMITED="$(create_api_key "$BASE" 1000000)"
    POLICY="$(create_policy_key "$BASE")"
    MALFORMED="$(python3 "$BENCH_DIR/keys.py" corrupt "$VALID")"
    UNKNOWN="$(python3 "$BENCH_DIR/keys.py" one)"
    expect_status "$BASE/healthz" 200
    expect_status "$BASE/api/v1/me" 200 "$VALID"
    expect_status "$BASE/api/v1/me" 200 "$LIMITED"
    expect_status "$BASE/api/v1/verify" 200 "$POLICY"
    expect_status "$BASE/api/v1/me" 401 "$MALFORMED"
    grep -q malformed_api_key "$WORK/probe" || die "the malformed key was not refused as malformed"
    expect_status "$BASE/api/v1/me" 401 "$UNKNOWN"
    grep -q invalid_api_key "$WORK/probe" || die "the unknown key was not refused as unknown"

    local max_conns
    max_conns="$(tr ' ' '\n' <<<"$BENCH_CONNS" | sort -n | tail -1)"
    log "$db: warm-up ${BENCH_WARMUP}s"
    run_wrk "$max_conns" "$BENCH_WARMUP" "$BASE/api/v1/me" "$VALID" >/dev/null

    local conns round i scenario miss_before miss_after moved malformed_requests first_before
    for conns in $BENCH_CONNS; do
        moved=0
        malformed_requests=0
        first_before=""
        log "$db: $conns connections, $BENCH_ROUNDS rounds of ${SLICE}s per scenario"
        for ((round = 0; round < BENCH_ROUNDS; round++)); do
            for ((i = 0; i < ${#SCENARIOS[@]}; i++)); do
                scenario="${SCENARIOS[(i + round) % ${#SCENARIOS[@]}]}"
                if [[ "$scenario" == malformed ]]; then
                    miss_before="$(metric "$MISS")"
                    first_before="${first_before:-$miss_before}"
                    scenario_slice "$db" "$conns" "$round" "$scenario"
                    miss_after="$(metric "$MISS")"
                    moved=$((moved + ${miss_after%.*} - ${miss_before%.*}))
                    malformed_requests=$((malformed_requests + LAST_REQUESTS))
                else
                    scenario_slice "$db" "$conns" "$round" "$scenario"
                fi
            done
        done
        note "$db c=$conns: $MISS before the first malformed slice $first_before, after the last $miss_after; summed over the malformed slices alone it moved by $moved, over $malformed_requests malformed requests"
    done

    if [[ "$db" == postgres && "$BENCH_PG_XACT" == 1 ]]; then
        # Backends publish their statistics after up to 10 s of idleness, hence the pauses.
        log "$db: counting database transactions over ${BENCH_SECONDS}s of malformed keys"
        sleep 11
        local xact_before xact_after result
        xact_before="$(pg_xacts)"
        miss_before="$(metric "$MISS")"
        result="$(run_wrk "$max_conns" "$BENCH_SECONDS" "$BASE/api/v1/me" "$MALFORMED")"
        miss_after="$(metric "$MISS")"
        sleep 11
        xact_after="$(pg_xacts)"
        note "$db c=$max_conns: ${result%% *} malformed requests in ${BENCH_SECONDS}s: $MISS before=$miss_before after=$miss_after; transactions in heffl_bench over the run and 11 s after (all sources, background tasks included): $((xact_after - xact_before))"
    fi
    note "$db: cache entries $(metric heffl_key_cache_entries); cache misses $(metric "$MISS"), hits $(metric 'heffl_key_cache_total{result="hit"}') in total"
    note "$db: server VmRSS $(rss_kb) kB, VmHWM $(peak_kb) kB at the end"
    stop_server
}

ensure_tools
build_release
start_hello "$BENCH_HELLO_PORT"
expect_status "$HELLO_URL" 200
note "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), $(free -h | awk '/^Mem:/ { print $2 }') memory; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for db in $BENCH_DBS; do
    bench_database "$db"
done

echo
echo "heffl-api benchmark against plain axum (examples/hello.rs): ${BENCH_SECONDS}s per row in $BENCH_ROUNDS interleaved slices, wrk -t1 on CPU $BENCH_CLIENT_CPU, server on CPU $BENCH_SERVER_CPU; load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
python3 "$BENCH_DIR/aggregate.py" "$SLICES" "$(getconf CLK_TCK)"
echo
cat "$NOTES"
