#!/usr/bin/env bash
# PostgreSQL only: the cost of a verification the cache cannot answer, and memory with many keys.
#
# 1. Cache-miss latency: 1,000,000 keys seeded into api_keys, the server started with
#    HEFFL_CACHE_CAPACITY=0 (every request is a lookup by digest), GET /api/v1/me with a real
#    key for BENCH_SECONDS at each connection count of BENCH_CONNS; the miss counter shows that
#    each request went to the database. EXPLAIN ANALYZE of the lookup shows the plan.
# 2. Memory: BENCH_RSS_KEYS (100,000) more keys whose plaintext is known, twice over (two sets),
#    and a server with the default cache settings (capacity 100,000). VmRSS after start-up,
#    after each key of set A was used once (all misses, filling the cache), after set A again
#    (all hits), and after set B (as many new keys again: the cache is full and evicts).
#
# Settings (environment): BENCH_SEED_KEYS (1000000), BENCH_RSS_KEYS (100000), BENCH_SECONDS
# (10), BENCH_CONNS ("1 64"), BENCH_RSS_CONNS (64), BENCH_PORT (18081), BENCH_SERVER_CPU (0),
# BENCH_CLIENT_CPU (1), BENCH_SKIP_BUILD (0), BENCH_PG_HOST/PORT/USER. The database
# heffl_bench_miss is created fresh and dropped at the end.
set -euo pipefail
source "$(dirname "$0")/bench/lib.sh"

BENCH_SEED_KEYS="${BENCH_SEED_KEYS:-1000000}"
BENCH_RSS_KEYS="${BENCH_RSS_KEYS:-100000}"
BENCH_SECONDS="${BENCH_SECONDS:-10}"
BENCH_CONNS="${BENCH_CONNS:-1 64}"
BENCH_RSS_CONNS="${BENCH_RSS_CONNS:-64}"
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
    read -r answered non200 <"$marker"
    [[ "$non200" == 0 ]] || die "$non200 of $answered requests did not answer 200"
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

echo
echo "Cache-miss latency, PostgreSQL, $(sql -c 'SELECT count(*) FROM api_keys') keys, HEFFL_CACHE_CAPACITY=0, GET /api/v1/me, ${BENCH_SECONDS}s per row"
echo
printf '| %5s | %10s | %8s | %8s | %8s | %14s | %7s |\n' conns requests/s "p50 ms" "p99 ms" requests "cache misses" errors
echo '|------:|-----------:|---------:|---------:|---------:|---------------:|--------:|'
for conns in $BENCH_CONNS; do
    miss_before="$(metric "$BASE" 'heffl_key_cache_total{result="miss"}')"
    result="$(run_wrk "$conns" "$BENCH_SECONDS" "$BASE/api/v1/me" "$KEY")"
    read -r requests _ rps p50 p99 non2xx errors <<<"$result"
    miss_after="$(metric "$BASE" 'heffl_key_cache_total{result="miss"}')"
    printf '| %5d | %10.0f | %8.3f | %8.3f | %8d | %14d | %7d |\n' "$conns" "$rps" "$p50" "$p99" \
        "$requests" "$((${miss_after%.*} - ${miss_before%.*}))" "$((non2xx + errors))"
done
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
log "generating 2 x $BENCH_RSS_KEYS keys"
python3 "$BENCH_DIR/keys.py" seed $((2 * BENCH_RSS_KEYS)) "$WORK/all.keys" "$WORK/all.tsv"
head -n "$BENCH_RSS_KEYS" "$WORK/all.keys" >"$WORK/a.keys"
tail -n +"$((BENCH_RSS_KEYS + 1))" "$WORK/all.keys" >"$WORK/b.keys"
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
curl -fsS -o /dev/null "$BASE/metrics"
rss_start="$(rss_kb)"
log "set A: $BENCH_RSS_KEYS keys, each once"
use_each_key "$WORK/a.keys"
read -r a_requests a_seconds a_rps a_p50 a_p99 _ <<<"$RESULT"
rss_a="$(rss_kb)"
entries_a="$(metric "$BASE" heffl_key_cache_entries)"
log "set A again"
use_each_key "$WORK/a.keys"
read -r a2_requests a2_seconds a2_rps a2_p50 a2_p99 _ <<<"$RESULT"
rss_a2="$(rss_kb)"
log "set B: $BENCH_RSS_KEYS new keys, each once"
use_each_key "$WORK/b.keys"
read -r b_requests b_seconds b_rps b_p50 b_p99 _ <<<"$RESULT"
rss_b="$(rss_kb)"
entries_b="$(metric "$BASE" heffl_key_cache_entries)"
# Usage is flushed every 5 s (HEFFL_USAGE_FLUSH_INTERVAL); wait one interval and a bit.
sleep 7
used="$(sql -c "SELECT count(*) FROM api_keys WHERE id LIKE 'key_bench%' AND last_used_at IS NOT NULL")"
rss_end="$(rss_kb)"
peak="$(peak_kb)"

echo
echo "Memory, PostgreSQL, default cache settings (HEFFL_CACHE_CAPACITY=100000), $BENCH_RSS_CONNS connections"
echo
echo '| step | requests | requests/s | p50 ms | p99 ms | cache entries | VmRSS kB |'
echo '|---|---:|---:|---:|---:|---:|---:|'
printf '| after start-up | | | | | | %s |\n' "$rss_start"
printf '| set A (%d new keys, each once: misses) | %s | %s | %s | %s | %s | %s |\n' "$BENCH_RSS_KEYS" "$a_requests" "$a_rps" "$a_p50" "$a_p99" "$entries_a" "$rss_a"
printf '| set A again (hits) | %s | %s | %s | %s | | %s |\n' "$a2_requests" "$a2_rps" "$a2_p50" "$a2_p99" "$rss_a2"
printf '| set B (%d more new keys: cache full, evicting) | %s | %s | %s | %s | %s | %s |\n' "$BENCH_RSS_KEYS" "$b_requests" "$b_rps" "$b_p50" "$b_p99" "$entries_b" "$rss_b"
printf '| %d s later (after the usage flush) | | | | | | %s |\n' 7 "$rss_end"
echo
echo "VmHWM (peak RSS): $peak kB; keys of the two sets with lastUsedAt written: $used of $((2 * BENCH_RSS_KEYS))"
echo "(requests include up to $BENCH_RSS_CONNS extra requests in flight when a set ended; elapsed times a,a2,b: ${a_seconds}s ${a2_seconds}s ${b_seconds}s)"
