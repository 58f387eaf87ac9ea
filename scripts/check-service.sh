#!/usr/bin/env bash
# Verify scripts/sersyncd.service with systemd-analyze (run by hand; the Go
# test internal/plugin/service_test.go does the same). The binary path is
# swapped for /bin/true so the check works before sersyncd is installed.
set -euo pipefail
here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
command -v systemd-analyze >/dev/null 2>&1 || { echo "check-service.sh: no systemd-analyze; skipped" >&2; exit 0; }
tmp="$(mktemp -d)"
trap 'rm -rf -- "$tmp"' EXIT
sed 's#^ExecStart=/usr/local/bin/sersyncd#ExecStart=/bin/true#' "$here/sersyncd.service" >"$tmp/sersyncd.service"
systemd-analyze verify --man=no "$tmp/sersyncd.service"
echo "sersyncd.service: ok"
