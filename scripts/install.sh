#!/usr/bin/env bash
# Install sersyncd as a systemd service:
#   bin/sersyncd             -> /usr/local/bin/sersyncd   (built with `make build` if missing)
#   scripts/sersyncd.service -> /etc/systemd/system/sersyncd.service
#   confxml.xml              -> /etc/sersyncd/confxml.xml (only if none exists: yours is kept)
#   docs/sersyncd.1          -> /usr/local/share/man/man1/sersyncd.1
#   /var/lib/sersyncd        (the queue's directory, mode 0700)
# then `systemctl daemon-reload` when systemd runs. It never starts or
# enables the service: edit the config, `sersyncd check -o FILE`, then
# `systemctl enable --now sersyncd`.
#
# Running it again is harmless: the binary, unit and man page are replaced,
# the config and the queue are left alone.
#
#   scripts/install.sh [--prefix DIR] [--no-build]
#     --prefix DIR  install below DIR instead of / (staging, packaging, tests);
#                   systemctl is not called then
#     --no-build    fail instead of running `make build` when bin/sersyncd is missing
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

prefix=""
build=1
while [ $# -gt 0 ]; do
	case "$1" in
	--prefix)
		[ $# -ge 2 ] || { echo "install.sh: --prefix needs a directory" >&2; exit 2; }
		prefix="$2"
		shift 2
		;;
	--prefix=*)
		prefix="${1#--prefix=}"
		shift
		;;
	--no-build)
		build=0
		shift
		;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		echo "install.sh: unknown argument: $1 (see --help)" >&2
		exit 2
		;;
	esac
done
if [ -n "$prefix" ]; then
	mkdir -p -- "$prefix"
	prefix="$(cd -- "$prefix" && pwd)"
	if [ "$prefix" = / ]; then
		prefix=""
	fi
fi

repo="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$repo/bin/sersyncd"

if [ ! -x "$bin" ]; then
	if [ "$build" = 0 ]; then
		echo "install.sh: $bin is missing; run make build" >&2
		exit 1
	fi
	echo "building $bin"
	make -C "$repo" build
fi

say() { printf '%s\n' "$*"; }

# install_file MODE SRC DEST: copy through a temporary file and rename, so a
# running sersyncd's binary is never overwritten in place.
install_file() {
	local mode="$1" src="$2" dest="$3" tmp
	mkdir -p -- "$(dirname -- "$dest")"
	tmp="$(dirname -- "$dest")/.$(basename -- "$dest").tmp.$$"
	cp -- "$src" "$tmp"
	chmod "$mode" "$tmp"
	mv -f -- "$tmp" "$dest"
	say "installed $dest"
}

install_file 0755 "$bin" "$prefix/usr/local/bin/sersyncd"
install_file 0644 "$repo/scripts/sersyncd.service" "$prefix/etc/systemd/system/sersyncd.service"
if [ -f "$repo/docs/sersyncd.1" ]; then
	install_file 0644 "$repo/docs/sersyncd.1" "$prefix/usr/local/share/man/man1/sersyncd.1"
fi

conf="$prefix/etc/sersyncd/confxml.xml"
mkdir -p -- "$prefix/etc/sersyncd"
if [ -e "$conf" ]; then
	say "kept $conf (exists)"
else
	install_file 0644 "$repo/confxml.xml" "$conf"
	say "  edit it: <localpath watch>, <remote ip name>, then: sersyncd check -o /etc/sersyncd/confxml.xml"
fi

mkdir -p -- "$prefix/var/lib/sersyncd"
chmod 0700 "$prefix/var/lib/sersyncd"
say "created $prefix/var/lib/sersyncd"

if [ -z "$prefix" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	say "systemctl daemon-reload done; start it with: systemctl enable --now sersyncd"
else
	say "systemd not reloaded (not running, or --prefix given)"
fi
