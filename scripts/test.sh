#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests on SQLite and PostgreSQL, then the
# browser test of the Settings > Developer page (which uses the binary cargo test just built),
# then the container image built from source and checked (scripts/container-check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --all-targets "$@"
# Schemathesis against a live server on its own /openapi.json (uses the binary just built).
scripts/schemathesis.sh
scripts/browser-test.sh
scripts/container-check.sh
