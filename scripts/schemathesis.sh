#!/usr/bin/env bash
# Schemathesis against a live server on its own /openapi.json: no 5xx, no status code the
# document does not list, no response body that contradicts its schema. Uses the binary that
# `cargo test` built (target/debug/heffl-api); builds nothing itself.
#
# Two runs, as integrators and as the dashboard: /api/v1 (and the operations endpoints) with a
# real API key, /app/v1 with a real session token. Path ids are drawn partly from real records
# made here (a workspace, a sacrificial key, member and lead), so operations reach their
# handlers' logic and not only their 404s. Logout runs with a second session of its own, so it
# cannot end the session the other operations use.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
VENV="$PWD/target/schemathesis-venv"
BIN=target/debug/heffl-api
# Bounds per run (fuzzing repeats until the time is spent): the step takes about two minutes.
# SCHEMATHESIS_ARGS adds options to both runs, e.g. "--report har --report-dir /tmp/st".
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-30}"
MAX_TIME="${SCHEMATHESIS_MAX_TIME:-50}"

[ -x "$BIN" ] || { echo "schemathesis.sh: $BIN is missing; run cargo test (or cargo build) first" >&2; exit 1; }

if [ "$("$VENV/bin/schemathesis" --version 2>/dev/null || true)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
  echo "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
export DATABASE_URL="sqlite://$work/schemathesis.db"
export HEFFL_BIND="127.0.0.1:$port"
export HEFFL_LOG_FORMAT=json
export HEFFL_METRICS_BIND=off
# Throttles would turn most generated requests into 429s; the checks are about the rest.
export HEFFL_RATE_LIMIT_PER_MINUTE=0
export HEFFL_AUTH_FAILURES_PER_MINUTE=0
export HEFFL_LEAK_REPORTS_PER_MINUTE=0
export HEFFL_LOGIN_ATTEMPTS_PER_MINUTE=100000

json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

owner_email=owner@schemathesis.example
password="$("$BIN" bootstrap --workspace "Schemathesis" --email "$owner_email" | json_field password)"

"$BIN" serve >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "$base/healthz" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "$base/healthz" >/dev/null

# call METHOD PATH AUTH-HEADER [BODY]: the response body; fails on any non-2xx answer.
call() {
  local args=(-fsS -X "$1" "$base$2" -H "$3")
  [ $# -ge 4 ] && args+=(-H 'Content-Type: application/json' --data "$4")
  curl "${args[@]}"
}
login() {
  call POST /app/v1/auth/login 'Accept: application/json' \
    "{\"email\": \"$owner_email\", \"password\": \"$password\"}" | json_field token
}

token="$(login)"
logout_token="$(login)"
bearer="Authorization: Bearer $token"
workspace_id="$(call GET /app/v1/session "$bearer" | python3 -c 'import json, sys; print(json.load(sys.stdin)["workspaces"][0]["id"])')"
api_key="$(call POST "/app/v1/workspaces/$workspace_id/api-keys" "$bearer" '{"name": "schemathesis"}' | json_field key)"
spare_key_id="$(call POST "/app/v1/workspaces/$workspace_id/api-keys" "$bearer" '{"name": "to revoke and roll"}' | json_field id)"
invitation_token="$(call POST "/app/v1/workspaces/$workspace_id/invitations" "$bearer" \
  '{"email": "member@schemathesis.example", "role": "member"}' | json_field token)"
member_id="$(call POST /app/v1/invitations/accept 'Accept: application/json' \
  "{\"token\": \"$invitation_token\", \"name\": \"Member\", \"password\": \"correct horse battery\"}" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["user"]["id"])')"
lead_ids=()
for n in 1 2 3; do
  lead_ids+=("$(call POST /api/v1/leads "x-api-key: $api_key" "{\"name\": \"Lead $n\", \"email\": \"lead$n@example.com\"}" | json_field id)")
done

# Real ids are used half of the time; the rest are generated, so "no such id" paths run too.
# Only the spare key and the spare member are offered, so the owner and the key in use survive.
# The owner's credentials let some logins succeed, so the success response is checked too.
cat >"$work/common.toml" <<EOF
[dictionaries.workspaces]
values = ["$workspace_id"]
[dictionaries.keys]
values = ["$spare_key_id"]
[dictionaries.members]
values = ["$member_id"]
[dictionaries.leads]
values = ["${lead_ids[0]}", "${lead_ids[1]}", "${lead_ids[2]}"]
[dictionaries.emails]
values = ["$owner_email"]
[dictionaries.passwords]
values = ["$password"]

[parameters]
"path.workspaceId" = { dictionary = "workspaces", probability = 0.5 }
"path.keyId" = { dictionary = "keys", probability = 0.5 }
"path.userId" = { dictionary = "members", probability = 0.5 }
"path.leadId" = { dictionary = "leads", probability = 0.5 }
"body.email" = { dictionary = "emails", probability = 0.5 }
"body.password" = { dictionary = "passwords", probability = 0.5 }
EOF
# Top-level keys must come before any table in TOML, hence headers first.
{
  echo "headers = { \"x-api-key\" = \"$api_key\" }"
  cat "$work/common.toml"
} >"$work/api.toml"
{
  echo "headers = { Authorization = \"Bearer $token\" }"
  cat "$work/common.toml"
  cat <<EOF

[[operations]]
include-operation-id = "logout"
headers = { Authorization = "Bearer $logout_token" }
EOF
} >"$work/dashboard.toml"

run() {
  local name="$1" config="$2"
  shift 2
  echo "== schemathesis: $name"
  # From the scratch directory, so nothing schemathesis writes lands in the work tree.
  (cd "$work" && "$VENV/bin/schemathesis" --config-file "$config" run "$base/openapi.json" \
    --checks not_a_server_error,status_code_conformance,response_schema_conformance \
    --phases examples,coverage,fuzzing \
    --max-examples "$MAX_EXAMPLES" \
    --max-time "$MAX_TIME" \
    --generation-database none \
    --seed "${SCHEMATHESIS_SEED:-$RANDOM}" \
    --no-color \
    ${SCHEMATHESIS_ARGS:-} \
    "$@")
}

status=0
run "/api/v1 with an API key" "$work/api.toml" \
  --include-path-regex '^/(api/v1/|healthz$|readyz$)' || status=1
run "/app/v1 with a session" "$work/dashboard.toml" \
  --include-path-regex '^/app/v1/' || status=1

if grep -q '"level":"ERROR"' "$work/server.log"; then
  echo "schemathesis.sh: the server logged errors:" >&2
  grep '"level":"ERROR"' "$work/server.log" >&2
  status=1
fi
exit "$status"
