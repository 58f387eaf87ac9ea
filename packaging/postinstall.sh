#!/bin/sh
# After install or upgrade (deb: configure; rpm: 1 or 2). The service is
# neither enabled nor started here: edit /etc/sersyncd/confxml.xml, check
# it, then enable it. An upgrade restarts a running sersyncd (it stops
# gracefully; what it has queued is pushed after the restart).
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	systemctl try-restart sersyncd.service >/dev/null 2>&1 || true
fi
if [ "$1" = configure ] && [ -z "$2" ] || [ "$1" = 1 ]; then
	echo "sersyncd: edit /etc/sersyncd/confxml.xml, run 'sersyncd check -o /etc/sersyncd/confxml.xml', then 'systemctl enable --now sersyncd'"
fi
exit 0
