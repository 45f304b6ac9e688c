#!/usr/bin/env bash
# Instructions per request (valgrind callgrind) of GET /api/v1/me, GET /api/v1/verify and
# GET /healthz on one server, the same key, warm cache, one keep-alive connection; two rounds.
# Unlike requests/s, an instruction count is not disturbed by other load on the machine.
#   scripts/bench/instructions.sh target/release/heffl-api   (N=500 requests per row, PORT=18181)
set -euo pipefail
BIN=${1:?usage: instructions.sh PATH/TO/heffl-api}; N=${N:-500}; D=$(mktemp -d); PORT=${PORT:-18181}
export DATABASE_URL="sqlite://$D/h.db" HEFFL_BIND="127.0.0.1:$PORT" HEFFL_RATE_LIMIT_PER_MINUTE=0 HEFFL_LOG_FORMAT=json RUST_LOG=warn
OUT=$("$BIN" bootstrap --workspace W --email o@w.test)
PW=$(python3 -c 'import json,sys;print(json.loads(sys.argv[1])["password"])' "$OUT")
WS=$(python3 -c 'import json,sys;print(json.loads(sys.argv[1])["workspaceId"])' "$OUT")
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$D/cg.out" "$BIN" serve 2>"$D/vg.log" &
VPID=$!
trap 'kill $VPID 2>/dev/null || true; rm -rf "$D"' EXIT
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
TOKEN=$(curl -sf "http://127.0.0.1:$PORT/app/v1/auth/login" -H 'content-type: application/json' -d "{\"email\":\"o@w.test\",\"password\":\"$PW\"}" | python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')
KEY=$(curl -sf "http://127.0.0.1:$PORT/app/v1/workspaces/$WS/api-keys" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{"name":"cg"}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["key"])')
hit() { python3 - "$PORT" "$1" "$KEY" "$2" <<'PY'
import http.client, sys
port, path, key, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=60)
for _ in range(n):
    c.request("GET", path, headers={"x-api-key": key})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
}
for path in /api/v1/me /api/v1/verify /healthz; do hit "$path" 50; done
for round in 1 2; do
for path in /api/v1/me /api/v1/verify /healthz; do
  callgrind_control -z "$VPID" >/dev/null
  callgrind_control -i on "$VPID" >/dev/null
  hit "$path" "$N"
  callgrind_control -i off "$VPID" >/dev/null
  callgrind_control --dump "$VPID" >/dev/null
  sleep 0.5
  F=$(ls -t "$D"/cg.out.* | head -1)
  IR=$(awk '/^totals:/ {print $2; exit}' "$F")
  echo "round $round $path: $IR instructions / $N = $((IR / N)) per request"
done
done
