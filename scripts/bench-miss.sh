#!/usr/bin/env bash
# PostgreSQL only: the cost of a verification the cache cannot answer, and memory with many keys.
#
# 1. Cache-miss latency: 1,000,000 keys seeded into api_keys, the server started with
#    HEFFL_CACHE_CAPACITY=0 (every request is a lookup by digest), GET /api/v1/me with a real
#    key for BENCH_SECONDS at each connection count of BENCH_CONNS, in BENCH_ROUNDS slices that
#    alternate with /healthz (the machine's own latency floor, as in bench.sh); the miss counter
#    shows that each request went to the database. EXPLAIN ANALYZE shows the lookup's plan.
# 2. Memory: three sets of BENCH_RSS_KEYS (100,000) more keys whose plaintext is known, and a
#    server with the default settings (cache capacity 100,000). VmRSS after start-up, after
#    each key of set A was used once (all misses, filling the cache), after set A again (all
#    hits), after sets B and C (new keys: the cache is full and evicts), BENCH_RSS_SETTLE (65)
#    seconds later, when the per-key rate-limit windows have been pruned, and after set B again.
#
# Settings (environment): BENCH_SEED_KEYS (1000000), BENCH_RSS_KEYS (100000), BENCH_SECONDS
# (10), BENCH_ROUNDS (5), BENCH_CONNS ("1 64"), BENCH_RSS_CONNS (64), BENCH_RSS_SETTLE (65),
# BENCH_PORT (18081), BENCH_SERVER_CPU (0), BENCH_CLIENT_CPU (1), BENCH_SKIP_BUILD (0),
# BENCH_PG_HOST/PORT/USER.
# The database heffl_bench_miss is created fresh and dropped at the end. A quick run:
#   BENCH_SEED_KEYS=10000 BENCH_RSS_KEYS=2000 BENCH_SECONDS=2 BENCH_ROUNDS=1 BENCH_RSS_SETTLE=0 \
#     scripts/bench-miss.sh
set -euo pipefail
source "$(dirname "$0")/bench/lib.sh"

BENCH_SEED_KEYS="${BENCH_SEED_KEYS:-1000000}"
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

# --- 1. cache-miss latency -------------------------------------------------------------------
start_server "$BENCH_PORT" "${ENV[@]}" HEFFL_CACHE_CAPACITY=0 \
    HEFFL_RATE_LIMIT_PER_MINUTE=0 HEFFL_AUTH_FAILURES_PER_MINUTE=0
KEY="$(create_api_key "$BASE")"
expect_status "$BASE/api/v1/me" 200 "$KEY"
DIGEST="$(python3 -c 'import hashlib,sys; print(hashlib.sha256(sys.argv[1].encode()).hexdigest())' "$KEY")"
run_wrk 64 2 "$BASE/api/v1/me" "$KEY" >/dev/null # warm-up: pool connections, plan caches

SLICES="$WORK/slices.tsv"
SLICE=$((BENCH_SECONDS / BENCH_ROUNDS))
((SLICE >= 1)) || die "BENCH_SECONDS must be at least BENCH_ROUNDS"
: >"$SLICES"
MISS='heffl_key_cache_total{result="miss"}'
miss_notes=()
for conns in $BENCH_CONNS; do
    log "$conns connections: $BENCH_ROUNDS rounds of ${SLICE}s of /healthz and of cache misses"
    moved=0
    miss_requests=0
    for ((round = 0; round < BENCH_ROUNDS; round++)); do
        # /healthz alternates with the misses as the noise floor: the machine's own tail latency.
        measure healthz postgres "$conns" "$round" "$BASE/healthz"
        miss_before="$(metric "$MISS")"
        measure miss postgres "$conns" "$round" "$BASE/api/v1/me" "$KEY"
        miss_after="$(metric "$MISS")"
        moved=$((moved + ${miss_after%.*} - ${miss_before%.*}))
        miss_requests=$((miss_requests + LAST_REQUESTS))
    done
    miss_notes+=("c=$conns: $MISS moved by $moved over $miss_requests requests (requests cut off in flight at the end of a slice are counted by the server but not by wrk)")
done

echo
echo "Cache-miss latency, PostgreSQL, $(sql -c 'SELECT count(*) FROM api_keys') keys, HEFFL_CACHE_CAPACITY=0 (every request of 'miss' is a lookup by digest), GET /api/v1/me; ${BENCH_SECONDS}s per row in $BENCH_ROUNDS interleaved slices; pool of HEFFL_DB_MAX_CONNECTIONS=10 (default); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
python3 "$BENCH_DIR/aggregate.py" "$SLICES" "$(getconf CLK_TCK)"
echo
printf '%s\n' "${miss_notes[@]}"
echo
echo "The lookup in the database (EXPLAIN ANALYZE, best of 5):"
for _ in 1 2 3 4 5; do
    sql <<SQL
EXPLAIN (ANALYZE, COSTS OFF, TIMING ON)
SELECT k.id AS key_id, k.name AS key_name, k.workspace_id, w.name AS workspace_name,
       u.id AS user_id, u.email AS user_email, u.name AS user_name,
       u.disabled_at AS user_disabled_at, m.role, k.revoked_at, k.rate_limit_per_minute
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
stop_server

# --- 2. memory with many distinct keys -------------------------------------------------------
log "generating 3 x $BENCH_RSS_KEYS keys"
python3 "$BENCH_DIR/keys.py" seed $((3 * BENCH_RSS_KEYS)) "$WORK/all.keys" "$WORK/all.tsv"
split -d -l "$BENCH_RSS_KEYS" "$WORK/all.keys" "$WORK/set."
sql -c "CREATE TABLE bench_keys (id TEXT, digest_hex TEXT, hint TEXT)"
sql -c "\\copy bench_keys FROM '$WORK/all.tsv'"
sql <<SQL
INSERT INTO api_keys (id, workspace_id, created_by, name, digest, hint, created_at)
SELECT id, '$WS_ID', '$USER_ID', 'rss ' || id, decode(digest_hex, 'hex'), hint,
       (extract(epoch FROM now()) * 1000)::bigint
FROM bench_keys;
DROP TABLE bench_keys;
ANALYZE api_keys;
SQL

# Default cache and rate-limit settings, as deployed.
start_server "$BENCH_PORT" "${ENV[@]}"
curl -fsS -o /dev/null "$METRICS_BASE/metrics"
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
echo "Memory, PostgreSQL, default settings (HEFFL_CACHE_CAPACITY=100000, HEFFL_CACHE_TTL=60s, rate limit 60/min per key), $BENCH_RSS_CONNS connections"
echo
echo '| step | requests | requests/s | p50 ms | p99 ms | cache entries | VmRSS kB |'
echo '|---|---:|---:|---:|---:|---:|---:|'
cat "$ROWS_RSS"
echo
echo "VmHWM (peak RSS): $(peak_kb) kB; keys of the three sets with lastUsedAt written: $used of $((3 * BENCH_RSS_KEYS)); requests include up to $BENCH_RSS_CONNS in flight when a set ended (those reuse keys of the same set)"
