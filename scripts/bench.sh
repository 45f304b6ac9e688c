#!/usr/bin/env bash
# Throughput and latency of API-key verification next to /healthz, on SQLite and PostgreSQL.
#
# For each database: a release build of `heffl-api serve` pinned to one CPU, the load generator
# (wrk, one thread) pinned to another; a fresh workspace and a key without a rate limit; then
# BENCH_SECONDS at each connection count of BENCH_CONNS for each scenario:
#   healthz    GET /healthz
#   valid      GET /api/v1/me with the key
#   malformed  the same key with its last character changed (bad checksum: refused before any
#              lookup; the cache-miss counter must not move)
#   unknown    a well-formed key with a valid checksum that no server issued
# and a table of requests/s, p50, p99 and requests/s as a ratio to /healthz at the same
# connection count in the same run.
#
# Settings (environment): BENCH_SECONDS (10), BENCH_CONNS ("64 1"), BENCH_DBS
# ("sqlite postgres"), BENCH_WARMUP (2, seconds), BENCH_PORT (18080), BENCH_SERVER_CPU (0),
# BENCH_CLIENT_CPU (1), BENCH_SKIP_BUILD (0), BENCH_PG_HOST/PORT/USER (127.0.0.1/5432/postgres),
# BENCH_PG_XACT (1: also count PostgreSQL transactions during the malformed runs; costs ~22 s).
# The PostgreSQL database heffl_bench is created fresh and dropped at the end.
set -euo pipefail
source "$(dirname "$0")/bench/lib.sh"

BENCH_SECONDS="${BENCH_SECONDS:-10}"
BENCH_CONNS="${BENCH_CONNS:-64 1}"
BENCH_DBS="${BENCH_DBS:-sqlite postgres}"
BENCH_WARMUP="${BENCH_WARMUP:-2}"
BENCH_PORT="${BENCH_PORT:-18080}"
BENCH_PG_XACT="${BENCH_PG_XACT:-1}"
BASE="http://127.0.0.1:$BENCH_PORT"
ROWS="$WORK/rows.tsv"
NOTES="$WORK/notes.txt"
: >"$ROWS"
: >"$NOTES"

note() {
    echo "$*" >>"$NOTES"
    log "$*"
}

pg_xacts() {
    psql_admin -d postgres -c "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'heffl_bench'"
}

bench_database() {
    local db=$1 url
    case "$db" in
    sqlite) url="sqlite://$WORK/bench.db" ;;
    postgres)
        fresh_database heffl_bench
        url="$(pg_url heffl_bench)"
        ;;
    *) die "unknown database '$db' in BENCH_DBS" ;;
    esac
    local env=(DATABASE_URL="$url" HEFFL_LOG_FORMAT=json RUST_LOG=warn
        HEFFL_RATE_LIMIT_PER_MINUTE=0 HEFFL_AUTH_FAILURES_PER_MINUTE=0)
    log "$db: bootstrap and start"
    bootstrap "${env[@]}"
    start_server "$BENCH_PORT" "${env[@]}"
    local valid malformed unknown
    valid="$(create_api_key "$BASE")"
    malformed="$(python3 "$BENCH_DIR/keys.py" corrupt "$valid")"
    unknown="$(python3 "$BENCH_DIR/keys.py" one)"
    expect_status "$BASE/healthz" 200
    expect_status "$BASE/api/v1/me" 200 "$valid"
    expect_status "$BASE/api/v1/me" 401 "$malformed"
    grep -q malformed_api_key "$WORK/probe" || die "the malformed key was not refused as malformed"
    expect_status "$BASE/api/v1/me" 401 "$unknown"
    grep -q invalid_api_key "$WORK/probe" || die "the unknown key was not refused as unknown"

    local max_conns
    max_conns="$(tr ' ' '\n' <<<"$BENCH_CONNS" | sort -n | tail -1)"
    log "$db: warm-up ${BENCH_WARMUP}s"
    run_wrk "$max_conns" "$BENCH_WARMUP" "$BASE/api/v1/me" "$valid" >/dev/null

    local scenario conns result miss_before miss_after xact_before="" xact_after
    for conns in $BENCH_CONNS; do
        for scenario in healthz valid malformed unknown; do
            if [[ "$scenario" == malformed ]]; then
                miss_before="$(metric "$BASE" 'heffl_key_cache_total{result="miss"}')"
                if [[ "$db" == postgres && "$BENCH_PG_XACT" == 1 ]]; then
                    # Backends report their statistics after up to 10 s of idleness.
                    sleep 11
                    xact_before="$(pg_xacts)"
                fi
            fi
            log "$db: $scenario, $conns connections, ${BENCH_SECONDS}s"
            case "$scenario" in
            healthz) result="$(run_wrk "$conns" "$BENCH_SECONDS" "$BASE/healthz")" ;;
            valid) result="$(run_wrk "$conns" "$BENCH_SECONDS" "$BASE/api/v1/me" "$valid")" ;;
            malformed) result="$(run_wrk "$conns" "$BENCH_SECONDS" "$BASE/api/v1/me" "$malformed")" ;;
            unknown) result="$(run_wrk "$conns" "$BENCH_SECONDS" "$BASE/api/v1/me" "$unknown")" ;;
            esac
            printf '%s\t%s\t%s\t%s\n' "$scenario" "$db" "$conns" "${result// /$'\t'}" >>"$ROWS"
            if [[ "$scenario" == malformed ]]; then
                miss_after="$(metric "$BASE" 'heffl_key_cache_total{result="miss"}')"
                note "$db c=$conns malformed: heffl_key_cache_total{result=\"miss\"} before=$miss_before after=$miss_after ($(cut -d' ' -f1 <<<"$result") requests)"
                if [[ -n "$xact_before" ]]; then
                    sleep 11
                    xact_after="$(pg_xacts)"
                    note "$db c=$conns malformed: PostgreSQL transactions in heffl_bench during the run (incl. background tasks): $((xact_after - xact_before))"
                    xact_before=""
                fi
            fi
        done
    done
    note "$db: cache entries $(metric "$BASE" heffl_key_cache_entries), misses in total $(metric "$BASE" 'heffl_key_cache_total{result="miss"}'), hits $(metric "$BASE" 'heffl_key_cache_total{result="hit"}')"
    note "$db: server VmRSS $(rss_kb) kB, VmHWM $(peak_kb) kB at the end"
    stop_server
}

ensure_tools
build_release
log "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), $(free -h | awk '/^Mem:/ { print $2 }') memory"
for db in $BENCH_DBS; do
    bench_database "$db"
done

echo
echo "heffl-api benchmark: ${BENCH_SECONDS}s per row, wrk -t1, server on CPU $BENCH_SERVER_CPU, wrk on CPU $BENCH_CLIENT_CPU"
echo
# Ratio: requests/s over /healthz's at the same database and connection count.
awk -F'\t' '
    { rows[NR] = $0; if ($1 == "healthz") base[$2 "/" $3] = $6 }
    END {
        printf "| %-9s | %-8s | %5s | %10s | %8s | %8s | %6s | %7s | %6s |\n", "scenario", "db", "conns", "requests/s", "p50 ms", "p99 ms", "ratio", "non-2xx", "errors"
        printf "|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", "-----------", "----------", "------:", "-----------:", "---------:", "---------:", "-------:", "--------:", "-------:"
        for (i = 1; i <= NR; i++) {
            split(rows[i], f, "\t")
            b = base[f[2] "/" f[3]]
            printf "| %-9s | %-8s | %5d | %10.0f | %8.3f | %8.3f | %6.2f | %7d | %6d |\n", f[1], f[2], f[3], f[6], f[7], f[8], (b > 0 ? f[6] / b : 0), f[9], f[10]
        }
    }' "$ROWS"
echo
cat "$NOTES"
