#!/bin/sh
# After removal. deb purge also removes the queue and the failure log: a
# purge means nothing of sersyncd is wanted any more (a plain remove keeps
# them for a reinstall). rpm has no purge.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = purge ]; then
	rm -rf /var/lib/sersyncd /var/log/sersyncd
fi
exit 0
