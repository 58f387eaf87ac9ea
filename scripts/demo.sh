#!/usr/bin/env bash
# make demo: on a fresh Debian machine, installs rsync if missing, builds
# sersyncd, starts an rsync daemon on 127.0.0.1:8873 as the backup target,
# runs sersyncd with the shipped confxml.xml and shows files arriving.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v rsync >/dev/null; then
	echo "demo: installing rsync"
	apt-get update -qq && apt-get install -y -qq rsync >/dev/null
fi
make -s build

demo=/tmp/sersyncd-demo
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

rm -rf "$demo"
mkdir -p "$demo/src" "$demo/dst"
chroot=no
[ "$(id -u)" = 0 ] && chroot=yes # without chroot the daemon rewrites absolute symlinks
cat >"$demo/rsyncd.conf" <<CONF
port = 8873
address = 127.0.0.1
use chroot = $chroot
socket options = TCP_NODELAY
[demo]
path = $demo/dst
read only = false
munge symlinks = no
CONF
[ "$(id -u)" = 0 ] && printf 'uid = root\ngid = root\n' >>"$demo/rsyncd.conf"
rsync --daemon --no-detach --config="$demo/rsyncd.conf" --log-file="$demo/rsyncd.log" &
pids+=($!)

./bin/sersyncd -o confxml.xml >"$demo/sersyncd.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q "sersyncd started" "$demo/sersyncd.log" && break; sleep 0.1; done
grep -q "sersyncd started" "$demo/sersyncd.log" || { cat "$demo/sersyncd.log"; exit 1; }

wait_for() { # path, what to print
	for _ in $(seq 100); do
		if [ -e "$demo/dst/$1" ] || [ -L "$demo/dst/$1" ]; then echo "demo: arrived: $2"; return 0; fi
		sleep 0.05
	done
	echo "demo: $2 did NOT arrive"; cat "$demo/sersyncd.log"; return 1
}
gone_wait() {
	for _ in $(seq 100); do [ -e "$demo/dst/$1" ] || { echo "demo: deleted on the target: $1"; return 0; }; sleep 0.05; done
	echo "demo: $1 was NOT deleted"; return 1
}

echo "demo: watching $demo/src, target rsync://127.0.0.1:8873/demo ($demo/dst)"
echo "hello from sersyncd at $(date)" >"$demo/src/hello.txt"
wait_for hello.txt hello.txt
cat "$demo/dst/hello.txt"
mkdir -p "$demo/src/a/b/c" && echo deep >"$demo/src/a/b/c/file with spaces"
wait_for "a/b/c/file with spaces" "a/b/c/file with spaces"
mv "$demo/src/a" "$demo/src/renamed"
wait_for "renamed/b/c/file with spaces" "renamed directory"
gone_wait a
diff -r "$demo/src" "$demo/dst" && echo "demo: target equals source"
echo "--- sersyncd log ---"
cat "$demo/sersyncd.log"
