#!/bin/sh
# Before removal (deb: remove; rpm: 0, not on upgrade): stop and disable the
# service, so no enabled unit points at a missing binary. Its queue stays.
set -e
case "$1" in
remove | 0)
	if command -v systemctl >/dev/null 2>&1; then
		if [ -d /run/systemd/system ]; then
			systemctl stop sersyncd.service >/dev/null 2>&1 || true
		fi
		systemctl disable sersyncd.service >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
