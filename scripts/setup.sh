#!/usr/bin/env bash
# Create .venv and install cxrseg with its pinned dependencies (idempotent; CPU build of torch).
#   bash scripts/setup.sh            # package + test tools
#   bash scripts/setup.sh --browser  # also Debian's chromium + chromedriver for the web-page test (needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first, pinned: this exact version is a CPU build on this machine's disk (see README).
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[test]"
# The shipped models' ONNX files are derived from their weights (not in git): write them beside the weights.
python -m cxrseg.export
if [ "${1:-}" = "--browser" ]; then
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
        || echo "setup: could not install chromium; the browser tests will be skipped (they fail under CXRSEG_REQUIRE_BROWSER=1, as in CI)" >&2
    else
      echo "setup: chromium not installed and no root/apt-get; the browser tests will be skipped (they fail under CXRSEG_REQUIRE_BROWSER=1, as in CI)" >&2
    fi
  fi
fi
