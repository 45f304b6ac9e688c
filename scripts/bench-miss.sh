#!/usr/bin/env bash
# PostgreSQL only: the cost of a verification the cache cannot answer, and memory with many keys.
#
# 1. Cache-miss latency: 1,000,000 keys seeded into api_keys plus BENCH_MISS_KEYS (20,000)
#    whose plaintext is known; the server started with HEFFL_CACHE_CAPACITY=0, and wrk sends
#    GET /api/v1/me with a different one of those keys on each request (bench/cycle.lua), so
#    every request is a lookup of its own that no concurrent request can share. For each
#    sslmode of BENCH_TLS_MODES ("prefer disable": TLS, the default, and plain TCP) and each
#    connection count of BENCH_CONNS, BENCH_SECONDS in BENCH_ROUNDS slices alternating with
#    /healthz (the machine's own latency floor, as in bench.sh); the miss counter shows that
#    each request went to the database. The table's CPU µs/req of "miss" is the server's CPU per
#    miss; with the server pinned to one core, requests/s is misses per second on one core.
#    Then, when BENCH_POOL_SIZES is set (e.g. "2 5 10 20 40"), the misses at 64 connections
#    against HEFFL_DB_MAX_CONNECTIONS (TLS), and EXPLAIN ANALYZE of the lookup.
# 2. Memory: three sets of BENCH_RSS_KEYS (100,000) more keys whose plaintext is known, and a
#    server with the default settings (cache capacity 100,000). VmRSS after start-up, after
#    each key of set A was used once (all misses, filling the cache), after set A again (all
#    hits), after sets B and C (new keys: the cache is full and evicts), BENCH_RSS_SETTLE (65)
#    seconds later, when the per-key rate-limit windows have been pruned, and after set B again.
#
# Settings (environment): BENCH_SEED_KEYS (1000000), BENCH_MISS_KEYS (20000), BENCH_RSS_KEYS
# (100000), BENCH_SECONDS (10), BENCH_ROUNDS (5), BENCH_CONNS ("1 64"), BENCH_TLS_MODES
# ("prefer disable"), BENCH_POOL_SIZES (""), BENCH_RSS_CONNS (64), BENCH_RSS_SETTLE (65),
# BENCH_PORT (18081), BENCH_METRICS_PORT (19464), BENCH_SERVER_CPU (0), BENCH_CLIENT_CPU (1),
# BENCH_SKIP_BUILD (0), BENCH_PG_HOST/PORT/USER.
# The database heffl_bench_miss is created fresh and dropped at the end. A quick run:
#   BENCH_SEED_KEYS=10000 BENCH_MISS_KEYS=2000 BENCH_RSS_KEYS=2000 BENCH_SECONDS=2 \
#     BENCH_ROUNDS=1 BENCH_RSS_SETTLE=0 BENCH_POOL_SIZES="5 10" scripts/bench-miss.sh
set -euo pipefail
source "$(dirname "$0")/bench/lib.sh"

BENCH_SEED_KEYS="${BENCH_SEED_KEYS:-1000000}"
BENCH_MISS_KEYS="${BENCH_MISS_KEYS:-20000}"
BENCH_TLS_MODES="${BENCH_TLS_MODES:-prefer disable}"
BENCH_POOL_SIZES="${BENCH_POOL_SIZES:-}"
BENCH_RSS_KEYS="${BENCH_RSS_KEYS:-100000}"
BENCH_SECONDS="${BENCH_SECONDS:-10}"
BENCH_ROUNDS="${BENCH_ROUNDS:-5}"
BENCH_CONNS="${BENCH_CONNS:-1 64}"
BENCH_RSS_CONNS="${BENCH_RSS_CONNS:-64}"
BENCH_RSS_SETTLE="${BENCH_RSS_SETTLE:-65}"
BENCH_PORT="${BENCH_PORT:-18081}"
BASE="http://127.0.0.1:$BENCH_PORT"
DB=heffl_bench_miss

sql() { psql_admin -d "$DB" "$@"; }

# load_keys TSV: inserts the keys of a keys.py TSV into api_keys, in the bootstrap workspace.
load_keys() {
    sql -c "CREATE TABLE bench_keys (id TEXT, digest_hex TEXT, hint TEXT)"
    sql -c "\\copy bench_keys FROM '$1'"
    sql <<SQL
INSERT INTO api_keys (id, workspace_id, created_by, name, digest, hint, created_at)
SELECT id, '$WS_ID', '$USER_ID', 'bench ' || id, decode(digest_hex, 'hex'), hint,
       (extract(epoch FROM now()) * 1000)::bigint
FROM bench_keys;
DROP TABLE bench_keys;
ANALYZE api_keys;
SQL
}

# use_each_key KEYS_FILE: GETs /api/v1/me once with every key of the file; sets RESULT to the wrk
# line. Not run in a subshell, so that the cleanup trap knows WRK_PID.
use_each_key() {
    local file=$1 marker="$WORK/done.$RANDOM" out="$WORK/keys.out" count limit
    count="$(wc -l <"$file")"
    # Generous: even 500 requests/s would finish in time.
    limit=$((count / 500 + 60))
    taskset -c "$BENCH_CLIENT_CPU" wrk -t1 "-c$BENCH_RSS_CONNS" "-d${limit}s" --timeout 10s \
        -s "$BENCH_DIR/keys.lua" "$BASE/api/v1/me" -- "$file" "$marker" >"$out" 2>&1 &
    WRK_PID=$!
    # wrk always runs for its whole -d; the script marks when every key has been answered.
    while [[ ! -s "$marker" ]] && kill -0 "$WRK_PID" 2>/dev/null; do
        sleep 0.2
    done
    kill -INT "$WRK_PID" 2>/dev/null || true
    wait "$WRK_PID" || true
    WRK_PID=""
    [[ -s "$marker" ]] || { cat "$out" >&2; die "wrk stopped before every key was used"; }
    read -r answered non200 detail <"$marker"
    [[ "$non200" == 0 ]] || {
        { grep -v '"level":"INFO"' "$WORK/server.log" || true; } | tail -5 >&2
        die "$non200 of $answered requests did not answer 200 (status:count $detail)"
    }
    RESULT="$(grep '^BENCH ' "$out" | tail -1 | cut -d' ' -f2-)"
}

ensure_tools
build_release
log "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), $(free -h | awk '/^Mem:/ { print $2 }') memory"
fresh_database "$DB"
ENV=(DATABASE_URL="$(pg_url "$DB")" HEFFL_LOG_FORMAT=json RUST_LOG=warn)
bootstrap "${ENV[@]}"

log "seeding $BENCH_SEED_KEYS keys"
seed_started=$SECONDS
sql <<SQL
INSERT INTO api_keys (id, workspace_id, created_by, name, digest, hint, created_at)
SELECT 'key_seed' || g, '$WS_ID', '$USER_ID', 'seed ' || g,
       sha256(convert_to(g || ':' || random()::text || ':' || clock_timestamp()::text, 'UTF8')),
       'hk_live_…seed', (extract(epoch FROM now()) * 1000)::bigint - g
FROM generate_series(1, $BENCH_SEED_KEYS) AS g;
ANALYZE api_keys;
SQL
log "seeded in $((SECONDS - seed_started)) s; api_keys has $(sql -c 'SELECT count(*) FROM api_keys') rows, $(sql -c "SELECT pg_size_pretty(pg_total_relation_size('api_keys'))")"

# Keys with known plaintext: the first BENCH_MISS_KEYS for the misses, the rest for memory.
log "generating $BENCH_MISS_KEYS + 3 x $BENCH_RSS_KEYS keys"
python3 "$BENCH_DIR/keys.py" seed $((BENCH_MISS_KEYS + 3 * BENCH_RSS_KEYS)) "$WORK/all.keys" "$WORK/all.tsv"
head -n "$BENCH_MISS_KEYS" "$WORK/all.keys" >"$WORK/miss.keys"
head -n "$BENCH_MISS_KEYS" "$WORK/all.tsv" | sed 's/^key_bench/key_miss/' >"$WORK/miss.tsv"
tail -n +$((BENCH_MISS_KEYS + 1)) "$WORK/all.keys" >"$WORK/rss.keys"
tail -n +$((BENCH_MISS_KEYS + 1)) "$WORK/all.tsv" >"$WORK/rss.tsv"
load_keys "$WORK/miss.tsv"

# --- 1. cache-miss latency -------------------------------------------------------------------
MISS_ENV=(HEFFL_CACHE_CAPACITY=0 HEFFL_RATE_LIMIT_PER_MINUTE=0 HEFFL_AUTH_FAILURES_PER_MINUTE=0)
SLICES="$WORK/slices.tsv"
SLICE=$((BENCH_SECONDS / BENCH_ROUNDS))
((SLICE >= 1)) || die "BENCH_SECONDS must be at least BENCH_ROUNDS"
: >"$SLICES"
MISS='heffl_key_cache_total{result="miss"}'
miss_notes=()
for mode in $BENCH_TLS_MODES; do
    case "$mode" in
    disable) label=pg-plain ;;
    *) label=pg-tls ;;
    esac
    start_server "$BENCH_PORT" DATABASE_URL="$(pg_url "$DB")?sslmode=$mode" \
        HEFFL_LOG_FORMAT=json RUST_LOG=warn "${MISS_ENV[@]}"
    [[ -n "${KEY:-}" ]] || KEY="$(create_api_key "$BASE")"
    expect_status "$BASE/api/v1/me" 200 "$KEY"
    expect_status "$BASE/api/v1/me" 200 "$(head -1 "$WORK/miss.keys")"
    run_wrk 64 2 "$BASE/api/v1/me" "@$WORK/miss.keys" >/dev/null # warm-up: pool, plan caches
    for conns in $BENCH_CONNS; do
        log "sslmode=$mode, $conns connections: $BENCH_ROUNDS rounds of ${SLICE}s of /healthz and of cache misses"
        moved=0
        miss_requests=0
        for ((round = 0; round < BENCH_ROUNDS; round++)); do
            # /healthz alternates with the misses as the noise floor: the machine's own tail latency.
            measure healthz "$label" "$conns" "$round" "$BASE/healthz"
            miss_before="$(metric "$MISS")"
            measure miss "$label" "$conns" "$round" "$BASE/api/v1/me" "@$WORK/miss.keys"
            miss_after="$(metric "$MISS")"
            moved=$((moved + ${miss_after%.*} - ${miss_before%.*}))
            miss_requests=$((miss_requests + LAST_REQUESTS))
        done
        miss_notes+=("$label c=$conns: $MISS moved by $moved over $miss_requests requests (requests cut off in flight at the end of a slice are counted by the server but not by wrk)")
    done
    stop_server
done

POOL_SLICES="$WORK/pool.tsv"
: >"$POOL_SLICES"
for pool in $BENCH_POOL_SIZES; do
    log "HEFFL_DB_MAX_CONNECTIONS=$pool: ${BENCH_SECONDS}s of cache misses at 64 connections"
    start_server "$BENCH_PORT" DATABASE_URL="$(pg_url "$DB")" HEFFL_LOG_FORMAT=json RUST_LOG=warn \
        "${MISS_ENV[@]}" HEFFL_DB_MAX_CONNECTIONS="$pool"
    run_wrk 64 2 "$BASE/api/v1/me" "@$WORK/miss.keys" >/dev/null
    SLICES_SAVED="$SLICES"
    SLICES="$POOL_SLICES"
    ORIGINAL_SLICE="$SLICE"
    SLICE="$BENCH_SECONDS"
    measure miss "pool-$pool" 64 0 "$BASE/api/v1/me" "@$WORK/miss.keys"
    SLICE="$ORIGINAL_SLICE"
    SLICES="$SLICES_SAVED"
    stop_server
done

echo
echo "Cache-miss latency, PostgreSQL, $(sql -c 'SELECT count(*) FROM api_keys') keys, HEFFL_CACHE_CAPACITY=0, GET /api/v1/me with $BENCH_MISS_KEYS distinct keys in turn (every 'miss' request is a lookup by digest of its own); pg-tls: sslmode=prefer (TLS, the default), pg-plain: sslmode=disable; ${BENCH_SECONDS}s per row in $BENCH_ROUNDS interleaved slices; pool of HEFFL_DB_MAX_CONNECTIONS=10 (default); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
python3 "$BENCH_DIR/aggregate.py" "$SLICES" "$(getconf CLK_TCK)"
echo
printf '%s\n' "${miss_notes[@]}"
echo
echo "Goals (pg-tls): CPU per miss ≤ 25 µs, p99 ≤ 1 ms at 1 connection and ≤ 5 ms at 64, ≥ 20000 misses/s on one core"
if [[ -s "$POOL_SLICES" ]]; then
    echo
    echo "Misses at 64 connections against the pool size (TLS; ${BENCH_SECONDS}s each; db column = pool-HEFFL_DB_MAX_CONNECTIONS):"
    echo
    python3 "$BENCH_DIR/aggregate.py" "$POOL_SLICES" "$(getconf CLK_TCK)"
fi
echo
echo "The lookup in the database (EXPLAIN ANALYZE, best of 5):"
DIGEST="$(python3 -c 'import hashlib,sys; print(hashlib.sha256(sys.argv[1].encode()).hexdigest())' "$KEY")"
for _ in 1 2 3 4 5; do
    sql <<SQL
EXPLAIN (ANALYZE, COSTS OFF, TIMING ON)
SELECT k.id AS key_id, k.name AS key_name, k.workspace_id, w.name AS workspace_name,
       u.id AS user_id, u.email AS user_email, u.name AS user_name,
       u.disabled_at AS user_disabled_at, m.role, k.revoked_at, k.expires_at, k.scopes,
       k.rate_limit_per_minute
FROM api_keys k
JOIN workspaces w ON w.id = k.workspace_id
JOIN users u ON u.id = k.created_by
LEFT JOIN memberships m ON m.workspace_id = k.workspace_id AND m.user_id = k.created_by
WHERE k.digest = decode('$DIGEST', 'hex');
SQL
done >"$WORK/explain.txt"
awk '/Planning Time|Execution Time/ { exit } { print }' "$WORK/explain.txt"
grep 'Planning Time' "$WORK/explain.txt" | sort -t: -k2 -n | head -1
grep 'Execution Time' "$WORK/explain.txt" | sort -t: -k2 -n | head -1

# --- 2. memory with many distinct keys -------------------------------------------------------
split -d -l "$BENCH_RSS_KEYS" "$WORK/rss.keys" "$WORK/set."
load_keys "$WORK/rss.tsv"

# Default cache and rate-limit settings, as deployed.
start_server "$BENCH_PORT" "${ENV[@]}"
ROWS_RSS="$WORK/rss.md"
printf '| after start-up | | | | | | %s |\n' "$(rss_kb)" >"$ROWS_RSS"

# rss_step LABEL KEYS_FILE: uses each key once and adds a row to the memory table.
rss_step() {
    log "$1"
    use_each_key "$2"
    local requests seconds rps p50 p99
    read -r requests seconds rps p50 p99 _ <<<"$RESULT"
    printf '| %s | %s | %.0f | %s | %s | %s | %s |\n' "$1" "$requests" "$rps" "$p50" "$p99" \
        "$(metric heffl_key_cache_entries)" "$(rss_kb)" >>"$ROWS_RSS"
}
rss_step "set A: $BENCH_RSS_KEYS new keys, each once (misses)" "$WORK/set.00"
rss_step "set A again (hits)" "$WORK/set.00"
rss_step "set B: $BENCH_RSS_KEYS more new keys, each once" "$WORK/set.01"
rss_step "set C: $BENCH_RSS_KEYS more new keys, each once" "$WORK/set.02"
# Usage is flushed every 5 s (HEFFL_USAGE_FLUSH_INTERVAL); wait one interval and a bit.
sleep 7
used="$(sql -c "SELECT count(*) FROM api_keys WHERE id LIKE 'key_bench%' AND last_used_at IS NOT NULL")"
printf '| 7 s later (usage flushed) | | | | | %s | %s |\n' "$(metric heffl_key_cache_entries)" "$(rss_kb)" >>"$ROWS_RSS"
if ((BENCH_RSS_SETTLE > 0)); then
    # Per-key rate-limit windows last a minute and are pruned after it.
    sleep "$BENCH_RSS_SETTLE"
    printf '| %s s later (rate-limit windows pruned) | | | | | %s | %s |\n' "$BENCH_RSS_SETTLE" \
        "$(metric heffl_key_cache_entries)" "$(rss_kb)" >>"$ROWS_RSS"
    # Freed memory stays with the allocator; reusing it, not growing, is what bounded means.
    rss_step "set B again (mostly evicted by C: misses)" "$WORK/set.01"
fi

echo
echo "Memory, PostgreSQL, default settings (HEFFL_CACHE_CAPACITY=100000, HEFFL_CACHE_TTL=10m, rate limit 60/min per key), $BENCH_RSS_CONNS connections"
echo
echo '| step | requests | requests/s | p50 ms | p99 ms | cache entries | VmRSS kB |'
echo '|---|---:|---:|---:|---:|---:|---:|'
cat "$ROWS_RSS"
echo
echo "VmHWM (peak RSS): $(peak_kb) kB; keys of the three sets with lastUsedAt written: $used of $((3 * BENCH_RSS_KEYS)); requests include up to $BENCH_RSS_CONNS in flight when a set ended (those reuse keys of the same set)"
