#!/usr/bin/env bash
# The browser test of the Settings > Developer page: Debian's Chromium driven by playwright-core
# (browsers cannot be downloaded here, so the system one is used). Expects target/debug/heffl-api,
# which the `cargo test` run in scripts/test.sh builds.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "FAILED: browser test needs /usr/bin/chromium (apt-get install -y chromium chromium-driver)" >&2
    exit 1
  fi
  echo "SKIPPED: browser test (install chromium)"
  exit 0
fi
if ! command -v node >/dev/null; then
  echo "FAILED: browser test needs node (20 or later)" >&2
  exit 1
fi

if [ ! -d node_modules/playwright-core ]; then
  # playwright-core never downloads a browser on install; the variable keeps it that way.
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
fi

node --test tests/browser/
