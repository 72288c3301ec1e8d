#!/usr/bin/env bash
# Run Flask's own session tests (from ../shared/flask-compat) against satchel in every mode.
# Usage: scripts/flask-compat.sh PATH/TO/flask-compat
set -euo pipefail
if [ $# -ne 1 ] || [ ! -d "$1" ]; then
  echo "usage: scripts/flask-compat.sh PATH/TO/flask-compat (Flask's session tests, kept outside" \
       "this repository; '${1:-}' is not a folder)" >&2
  exit 1
fi
src="$(cd "$1" && pwd)"
here="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python}"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
cp -r "$src"/. "$work"/
chmod -R u+w "$work"
PYTHON="$PY" "$work/setup.sh"
for mode in memory sqlite cookie redis postgres; do
  echo "== Flask's session tests, satchel $mode mode"
  FLASK_SESSION_SWAP_SCOPE=all PYTHONPATH="$here/tests:$here" PYTHON="$PY" \
    "$work/run.sh" "compat_factories:$mode"
done
