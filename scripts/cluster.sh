#!/usr/bin/env bash
# Three heffl-api instances on one PostgreSQL and one Redis, behind nginx (deploy/nginx.conf),
# all on loopback ports: a deployment to try on one machine. Ctrl-C (or SIGTERM) stops it all.
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/heffl scripts/cluster.sh
#   curl http://127.0.0.1:8080/healthz
#
# Settings (environment): DATABASE_URL (required, PostgreSQL), HEFFL_REDIS_URL
# (redis://127.0.0.1:6379), CLUSTER_PORT (nginx, 8080), CLUSTER_INSTANCE_PORTS ("8081 8082
# 8083"), CLUSTER_METRICS_PORTS (each instance's HEFFL_METRICS_BIND, "9465 9466 9467"), CLUSTER_DIR (a new temporary directory: logs, pids, nginx's files), HEFFL_BIN (the
# binary; default: build target/release/heffl-api), NGINX (/usr/sbin/nginx). Every other
# HEFFL_* variable is passed to the instances. Prints "cluster ready" when nginx answers.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${DATABASE_URL:?set DATABASE_URL to a PostgreSQL database (postgres://...)}"
export HEFFL_REDIS_URL="${HEFFL_REDIS_URL:-redis://127.0.0.1:6379}"
export HEFFL_TRUST_FORWARDED_FOR=true
CLUSTER_PORT="${CLUSTER_PORT:-8080}"
read -r -a PORTS <<<"${CLUSTER_INSTANCE_PORTS:-8081 8082 8083}"
read -r -a METRICS_PORTS <<<"${CLUSTER_METRICS_PORTS:-9465 9466 9467}"
[ "${#PORTS[@]}" -eq 3 ] || { echo "CLUSTER_INSTANCE_PORTS must list 3 ports" >&2; exit 2; }
CLUSTER_DIR="${CLUSTER_DIR:-$(mktemp -d -t heffl-cluster.XXXXXX)}"
NGINX="${NGINX:-/usr/sbin/nginx}"
[ -x "$NGINX" ] || { echo "nginx not found at $NGINX (apt-get install nginx)" >&2; exit 2; }
if [ -z "${HEFFL_BIN:-}" ]; then
  cargo build --release --quiet
  HEFFL_BIN=target/release/heffl-api
fi
mkdir -p "$CLUSTER_DIR/tmp" "$CLUSTER_DIR/logs"

pids=()
stop() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT
trap 'exit 0' INT TERM

# Once, before the instances start (they would each try at start-up).
"$HEFFL_BIN" migrate

for i in 0 1 2; do
  port="${PORTS[$i]}"
  # Each its own metrics listener (one host, so not the default port).
  HEFFL_BIND="127.0.0.1:$port" HEFFL_METRICS_BIND="127.0.0.1:${METRICS_PORTS[$i]}" \
    "$HEFFL_BIN" serve >"$CLUSTER_DIR/logs/instance-$port.log" 2>&1 &
  pids+=("$!")
  echo "$!" >"$CLUSTER_DIR/instance-$port.pid"
done

sed -e "s/127\.0\.0\.1:8080;/127.0.0.1:$CLUSTER_PORT;/" \
    -e "s/127\.0\.0\.1:8081 /127.0.0.1:${PORTS[0]} /" \
    -e "s/127\.0\.0\.1:8082 /127.0.0.1:${PORTS[1]} /" \
    -e "s/127\.0\.0\.1:8083 /127.0.0.1:${PORTS[2]} /" \
    -e "s/^worker_processes auto;/worker_processes 1;/" \
    deploy/nginx.conf >"$CLUSTER_DIR/nginx.conf"
"$NGINX" -p "$CLUSTER_DIR" -c "$CLUSTER_DIR/nginx.conf" -g 'daemon off;' \
  >"$CLUSTER_DIR/logs/nginx.log" 2>&1 &
pids+=("$!")
nginx_pid="$!"

for port in "${PORTS[@]}" "$CLUSTER_PORT"; do
  for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || { echo "127.0.0.1:$port did not come up; logs in $CLUSTER_DIR/logs" >&2; exit 1; }
done
echo "cluster ready: http://127.0.0.1:$CLUSTER_PORT (instances ${PORTS[*]}; logs and pids in $CLUSTER_DIR)"
# An instance may die (nginx sends its requests to the others); nginx exiting ends the cluster.
wait "$nginx_pid" || true
echo "nginx exited; stopping the instances" >&2
