# Shared by scripts/bench.sh and scripts/bench-miss.sh; sourced, not run.
# Every setting can be overridden from the environment (see the two scripts' headers).

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/../.." && pwd)"
# BENCH_BIN: another build of heffl-api to measure (with BENCH_SKIP_BUILD=1), e.g. an older
# commit's, to compare two builds on the same machine in the same hour.
BIN="${BENCH_BIN:-$ROOT/target/release/heffl-api}"
HELLO_BIN="${HELLO_BIN:-$ROOT/target/release/examples/hello}"

BENCH_PG_HOST="${BENCH_PG_HOST:-127.0.0.1}"
BENCH_PG_PORT="${BENCH_PG_PORT:-5432}"
BENCH_PG_USER="${BENCH_PG_USER:-postgres}"
BENCH_SERVER_CPU="${BENCH_SERVER_CPU:-0}"
BENCH_CLIENT_CPU="${BENCH_CLIENT_CPU:-1}"
BENCH_SKIP_BUILD="${BENCH_SKIP_BUILD:-0}"
# /metrics is served on a listener of its own (HEFFL_METRICS_BIND); the scripts read it there,
# and fall back to the API port for builds that still serve it there.
BENCH_METRICS_PORT="${BENCH_METRICS_PORT:-19464}"
METRICS_BASE="http://127.0.0.1:$BENCH_METRICS_PORT"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/heffl-bench.XXXXXX")"
SERVER_PID=""
HELLO_PID=""
WRK_PID=""
DATABASES_TO_DROP=()

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

psql_admin() {
    psql -h "$BENCH_PG_HOST" -p "$BENCH_PG_PORT" -U "$BENCH_PG_USER" -v ON_ERROR_STOP=1 -qAtX "$@"
}

pg_url() { echo "postgres://$BENCH_PG_USER@$BENCH_PG_HOST:$BENCH_PG_PORT/$1"; }

fresh_database() {
    psql_admin -d postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)"
    psql_admin -d postgres -c "CREATE DATABASE $1"
    DATABASES_TO_DROP+=("$1")
}

stop_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        # The server drains and flushes usage on SIGTERM; give it its grace, then insist.
        for _ in $(seq 1 100); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}

stop_hello() {
    if [[ -n "$HELLO_PID" ]]; then
        kill -TERM "$HELLO_PID" 2>/dev/null || true
        wait "$HELLO_PID" 2>/dev/null || true
    fi
    HELLO_PID=""
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n "$WRK_PID" ]]; then
        kill -TERM "$WRK_PID" 2>/dev/null || true
    fi
    stop_server
    stop_hello
    for db in "${DATABASES_TO_DROP[@]}"; do
        psql_admin -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" 2>/dev/null || true
    done
    if [[ "${BENCH_KEEP_WORK:-0}" == 1 ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_tools() {
    for tool in curl python3 taskset psql; do
        command -v "$tool" >/dev/null || die "$tool is required"
    done
    if ! command -v wrk >/dev/null; then
        command -v apt-get >/dev/null || die "wrk is missing and there is no apt-get; install wrk"
        log "installing wrk with apt-get"
        apt-get install -y wrk >/dev/null 2>&1 ||
            { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; } ||
            die "could not install wrk"
    fi
}

build_release() {
    if [[ "$BENCH_SKIP_BUILD" == 1 ]]; then
        [[ -x "$BIN" && -x "$HELLO_BIN" ]] || die "BENCH_SKIP_BUILD=1 but $BIN or $HELLO_BIN does not exist"
        log "using the existing $BIN and $HELLO_BIN"
        return
    fi
    log "cargo build --release --bin heffl-api --example hello"
    (cd "$ROOT" && cargo build --release --quiet --bin heffl-api --example hello)
}

# start_hello PORT: the plain axum baseline (examples/hello.rs), pinned like the server; sets
# HELLO_PID and HELLO_URL.
start_hello() {
    local port=$1
    taskset -c "$BENCH_SERVER_CPU" "$HELLO_BIN" "127.0.0.1:$port" >>"$WORK/hello.log" 2>&1 &
    HELLO_PID=$!
    HELLO_URL="http://127.0.0.1:$port/hello"
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null --max-time 1 "$HELLO_URL" 2>/dev/null && return
        kill -0 "$HELLO_PID" 2>/dev/null || die "the plain axum server exited during start-up"
        sleep 0.1
    done
    die "the plain axum server did not answer within 10 s"
}

json_field() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read())[sys.argv[1]])' "$1"; }

# start_server PORT VAR=VALUE...: runs `heffl-api serve` pinned to BENCH_SERVER_CPU with the
# given environment (metrics on BENCH_METRICS_PORT, in METRICS_BASE), and waits until /healthz answers.
start_server() {
    local port=$1
    shift
    (cd "$WORK" && exec env "$@" HEFFL_BIND="127.0.0.1:$port" \
        HEFFL_METRICS_BIND="127.0.0.1:$BENCH_METRICS_PORT" \
        taskset -c "$BENCH_SERVER_CPU" "$BIN" serve) >>"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/healthz" 2>/dev/null; then
            return
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || {
            tail -20 "$WORK/server.log" >&2
            die "the server exited during start-up"
        }
        sleep 0.2
    done
    die "the server did not answer /healthz within 60 s"
}

# bootstrap VAR=VALUE...: creates the workspace and owner; sets WS_ID, USER_ID, PASSWORD.
bootstrap() {
    local out
    out="$(cd "$WORK" && env "$@" "$BIN" bootstrap --workspace Bench --email bench@example.com)"
    WS_ID="$(json_field workspaceId <<<"$out")"
    USER_ID="$(json_field userId <<<"$out")"
    PASSWORD="$(json_field password <<<"$out")"
}

# create_api_key BASE_URL [LIMIT]: logs in as the bootstrap owner and prints a new key with
# rateLimitPerMinute LIMIT (default 0: no rate limit).
create_api_key() {
    local base=$1 limit=${2:-0} token body
    body="$(python3 -c 'import json,sys; print(json.dumps({"email": "bench@example.com", "password": sys.argv[1]}))' "$PASSWORD")"
    token="$(curl -fsS --max-time 10 -H 'content-type: application/json' -d "$body" \
        "$base/app/v1/auth/login" | json_field token)"
    curl -fsS --max-time 10 -H 'content-type: application/json' -H "authorization: Bearer $token" \
        -d "{\"name\":\"bench\",\"rateLimitPerMinute\":$limit}" \
        "$base/app/v1/workspaces/$WS_ID/api-keys" | json_field key
}

# create_policy_key BASE_URL: a key with the policies a verification checks: an allowlist
# (holding the loopback the load comes from), a trillion credits, metadata and an external id.
create_policy_key() {
    local base=$1 token body
    body="$(python3 -c 'import json,sys; print(json.dumps({"email": "bench@example.com", "password": sys.argv[1]}))' "$PASSWORD")"
    token="$(curl -fsS --max-time 10 -H 'content-type: application/json' -d "$body" \
        "$base/app/v1/auth/login" | json_field token)"
    curl -fsS --max-time 10 -H 'content-type: application/json' -H "authorization: Bearer $token" \
        -d '{"name":"bench policy","allowedIps":["127.0.0.0/8","10.0.0.0/8","2001:db8::/32"],"credits":{"remaining":1000000000000},"meta":{"plan":"pro","seats":12},"externalId":"cus_bench"}' \
        "$base/app/v1/workspaces/$WS_ID/api-keys" | json_field key
}

# expect_status URL STATUS [KEY]: refuses to measure a scenario that does not answer as planned.
expect_status() {
    local url=$1 want=$2 key=${3:-} got
    if [[ -n "$key" ]]; then
        got="$(curl -sS -o "$WORK/probe" -w '%{http_code}' --max-time 10 -H "x-api-key: $key" "$url")"
    else
        got="$(curl -sS -o "$WORK/probe" -w '%{http_code}' --max-time 10 "$url")"
    fi
    [[ "$got" == "$want" ]] || die "$url answered $got, expected $want: $(head -c 300 "$WORK/probe")"
}

# metric 'name{labels}': one sample from the server's metrics listener (0 when absent).
metric() {
    curl -fsS --max-time 10 "$METRICS_BASE/metrics" | awk -v name="$1" '$1 == name { v = $2 } END { print v + 0 }'
}

# rss_kb: the server's resident set size in kB (VmRSS); peak_kb: its high-water mark (VmHWM).
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status"; }
peak_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$SERVER_PID/status"; }

# cpu_ticks [PID]: a server's user + system CPU time so far, in clock ticks (getconf CLK_TCK);
# heffl-api's unless a PID is given.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/${1:-$SERVER_PID}/stat"; }

# run_wrk CONNS SECONDS URL [KEY|@KEYS_FILE [QUANTILE_FILE]]: prints
# "requests seconds rps p50_ms p99_ms non2xx errors"; see report.lua for QUANTILE_FILE.
run_wrk() {
    local conns=$1 seconds=$2 url=$3 key=${4:-} quantiles=${5:-} out="$WORK/wrk.out"
    local args=(-t1 "-c$conns" "-d${seconds}s" --timeout 10s)
    # KEY "@FILE" cycles through the keys of FILE (bench/cycle.lua), one key per request.
    if [[ "$key" == @* ]]; then
        args+=(-s "$BENCH_DIR/cycle.lua")
        export BENCH_KEYS_FILE="${key#@}"
    else
        args+=(-s "$BENCH_DIR/report.lua")
        [[ -n "$key" ]] && args+=(-H "x-api-key: $key")
    fi
    timeout --signal=INT --kill-after=10 $((seconds + 30)) env BENCH_QUANTILES="$quantiles" \
        taskset -c "$BENCH_CLIENT_CPU" wrk "${args[@]}" "$url" >"$out" 2>&1 ||
        { cat "$out" >&2; die "wrk failed"; }
    grep '^BENCH ' "$out" | tail -1 | cut -d' ' -f2- || die "no result line from wrk"
}

# measure SCENARIO DB CONNS ROUND URL [KEY]: one slice of $SLICE seconds, appended to $SLICES as
# a row for bench/aggregate.py (with the server's CPU ticks and a quantile file); sets
# LAST_REQUESTS. The scenario "hello" is the plain axum server (HELLO_PID); the rest heffl-api.
measure() {
    local scenario=$1 db=$2 conns=$3 round=$4 url=$5 key=${6:-}
    local quantiles="$WORK/q.$db.$conns.$round.$scenario" ticks_before ticks_after result pid=""
    [[ "$scenario" == hello ]] && pid="$HELLO_PID"
    ticks_before="$(cpu_ticks "$pid")"
    result="$(run_wrk "$conns" "$SLICE" "$url" "$key" "$quantiles")"
    ticks_after="$(cpu_ticks "$pid")"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$db" "$conns" "$round" \
        "${result// /$'\t'}" "$((ticks_after - ticks_before))" "$quantiles" >>"$SLICES"
    LAST_REQUESTS="${result%% *}"
}
