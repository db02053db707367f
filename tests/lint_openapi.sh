#!/bin/sh
# Lints api/openapi.yaml with @stoplight/spectral-cli and @redocly/cli: warnings count as
# failures. Where the linters are not installed (npm unreachable) it says so and exits 77,
# which ctest reports as skipped. Install them with: npm install -g @stoplight/spectral-cli
# @redocly/cli (or set SYNCRELAY_LINT_BIN to a node_modules/.bin holding both).
# usage: lint_openapi.sh SOURCE_DIR
set -u
SRC=$1
BIN=${SYNCRELAY_LINT_BIN:-}
find_tool() {
	if [ -n "$BIN" ] && [ -x "$BIN/$1" ]; then echo "$BIN/$1"; return; fi
	command -v "$1" 2>/dev/null
}
SPECTRAL=$(find_tool spectral)
REDOCLY=$(find_tool redocly)
if [ -z "$SPECTRAL" ] || [ -z "$REDOCLY" ]; then
	echo "lint_openapi: skipped: spectral and redocly are not installed (npm install -g @stoplight/spectral-cli @redocly/cli)"
	exit 77
fi
cd "$SRC" || exit 1
rc=0
"$SPECTRAL" lint --fail-severity warn -r api/.spectral.yaml api/openapi.yaml || rc=1
"$REDOCLY" lint --config api/redocly.yaml --max-problems 50 api/openapi.yaml >/tmp/lint_openapi.$$ 2>&1 || rc=1
cat /tmp/lint_openapi.$$
grep -q "You have [0-9]* warning" /tmp/lint_openapi.$$ && { echo "lint_openapi: redocly warned"; rc=1; }
rm -f /tmp/lint_openapi.$$
exit $rc
