#!/usr/bin/env bash
# Builds the image of ./Containerfile from source and checks it as an operator would: its
# configuration (non-root user, /data, the listen address), then the server run from the image's
# own files with the image's own environment: /healthz, and a key round trip (bootstrap, sign in,
# create a key, GET /api/v1/me with it).
#
# No image can be pulled here and no container engine can run one (cgroups), so: the base
# images are made from Debian's packages with mmdebstrap (kept in buildah's storage for the next
# run); `buildah bud --isolation chroot` builds; the build stage uses this machine's Rust
# toolchain, mounted read-only, with cargo's registry and a target directory that persist
# between runs (target/container); the image is run with `buildah mount` and `chroot`.
#
# Under CI=true a missing buildah or mmdebstrap fails; elsewhere the check is skipped with a
# notice. CONTAINER_CHECK=0 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${CONTAINER_CHECK:-1}" == 0 ]]; then
    echo "container check skipped (CONTAINER_CHECK=0)"
    exit 0
fi
for tool in buildah mmdebstrap; do
    if ! command -v "$tool" >/dev/null; then
        if [[ "${CI:-}" == true || "${CI:-}" == 1 ]]; then
            echo "container check: $tool is required in CI (apt-get install buildah mmdebstrap)" >&2
            exit 1
        fi
        echo "SKIPPED: container check needs $tool (apt-get install buildah mmdebstrap)"
        exit 0
    fi
done

export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
WORK="$(mktemp -d)"
IMAGE=localhost/heffl-api:check
CTR=""
MNT=""
SERVER_PID=""
cleanup() {
    [[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
    if [[ -n "$MNT" ]]; then
        umount "$MNT/proc" 2>/dev/null || true
    fi
    [[ -n "$CTR" ]] && buildah rm "$CTR" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "container check: $*"; }

# base IMAGE PACKAGES [ENV...]: a Debian bookworm image from Debian's packages, made once.
base() {
    local image=$1 packages=$2 ctr
    shift 2
    if buildah inspect "$image" >/dev/null 2>&1; then
        return
    fi
    log "making $image with mmdebstrap"
    mmdebstrap --quiet --variant=minbase --include="$packages" bookworm "$WORK/root.tar"
    ctr="$(buildah from scratch)"
    buildah add "$ctr" "$WORK/root.tar" / >/dev/null
    local env
    for env in "$@"; do
        buildah config --env "$env" "$ctr"
    done
    buildah commit --quiet --rm "$ctr" "$image" >/dev/null
    rm -f "$WORK/root.tar"
}
base localhost/heffl-runtime-base:bookworm ca-certificates
base localhost/heffl-builder-base:bookworm ca-certificates,gcc,libc6-dev \
    PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    RUSTUP_HOME=/root/.rustup CARGO_HOME=/root/.cargo

log "building $IMAGE from source"
started=$SECONDS
mkdir -p target/container
buildah bud --quiet --pull=never \
    --build-arg BUILDER=localhost/heffl-builder-base:bookworm \
    --build-arg RUNTIME=localhost/heffl-runtime-base:bookworm \
    --volume "$HOME/.rustup:/root/.rustup:ro" \
    --volume "$HOME/.cargo:/root/.cargo" \
    --volume "$PWD/target/container:/src/target" \
    -f Containerfile -t "$IMAGE" . >/dev/null
log "built in $((SECONDS - started)) s"

inspect() { buildah inspect --type image --format "$1" "$IMAGE"; }
[[ "$(inspect '{{.OCIv1.Config.User}}')" == heffl ]] || { echo "the image does not run as heffl" >&2; exit 1; }
inspect '{{range $k, $v := .OCIv1.Config.Volumes}}{{$k}} {{end}}' | grep -qw /data || { echo "no /data volume" >&2; exit 1; }
mapfile -t IMAGE_ENV < <(inspect '{{range .OCIv1.Config.Env}}{{println .}}{{end}}' | sed '/^$/d')
printf '%s\n' "${IMAGE_ENV[@]}" | grep -qx 'HEFFL_BIND=0.0.0.0:8080' || { echo "HEFFL_BIND is not 0.0.0.0:8080" >&2; exit 1; }

CTR="$(buildah from --pull-never "$IMAGE")"
MNT="$(buildah mount "$CTR")"
mount -t proc proc "$MNT/proc"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# The image's environment, with the address moved to a free loopback port for this check.
# `exec`, so that the server started in the background is $SERVER_PID itself, which cleanup
# stops (a subshell's kill left the server running). Call it only in a subshell: `&` or `$(…)`.
run_in_image() {
    exec chroot --userspec=10001:10001 "$MNT" /usr/bin/env -i "${IMAGE_ENV[@]}" \
        HEFFL_BIND="127.0.0.1:$PORT" HEFFL_METRICS_BIND=off /usr/local/bin/heffl-api "$@"
}
run_in_image serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do
    curl -fsS "$BASE/healthz" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
    sleep 0.1
done
curl -fsS "$BASE/healthz" >/dev/null || { cat "$WORK/server.log" >&2; echo "no /healthz" >&2; exit 1; }
[[ -s "$MNT/data/heffl.db" ]] || { echo "the database is not in /data" >&2; exit 1; }

OWNER="$(run_in_image bootstrap --workspace 'Container check' --email ops@example.com)"
field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
PASSWORD="$(field "$OWNER" password)"
WS="$(field "$OWNER" workspaceId)"
LOGIN="$(python3 -c 'import json, sys; print(json.dumps({"email": "ops@example.com", "password": sys.argv[1]}))' "$PASSWORD")"
TOKEN="$(field "$(curl -fsS -H 'content-type: application/json' -d "$LOGIN" "$BASE/app/v1/auth/login")" token)"
KEY="$(field "$(curl -fsS -H 'content-type: application/json' -H "authorization: Bearer $TOKEN" \
    -d '{"name": "Container check"}' "$BASE/app/v1/workspaces/$WS/api-keys")" key)"
ME="$(curl -fsS -H "x-api-key: $KEY" "$BASE/api/v1/me")"
[[ "$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["workspace"]["name"])' "$ME")" == "Container check" ]] ||
    { echo "unexpected /api/v1/me: $ME" >&2; exit 1; }
grep -q '"level":"INFO"' "$WORK/server.log" || { echo "the image does not log JSON" >&2; exit 1; }
log "ok: non-root, /data, JSON logs, /healthz and a key round trip from the image's own files"
