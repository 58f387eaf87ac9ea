#!/usr/bin/env bash
# Install the .deb built by `make package` on this machine with dpkg, run
# what it installed, remove it, and check that nothing but the config is
# left; then purge it, leaving the machine as it was. Needs root and dpkg;
# skipped (exit 0, with a message) without them, or when a sersyncd package
# or /etc/sersyncd is already there (an operator's install is never touched).
#
# With an .rpm too, and rpm on PATH, it checks that the .rpm holds the same
# files as the .deb, the config marked as one (it is not installed).
#
#   scripts/test-package.sh build/sersyncd_VERSION_ARCH.deb [build/sersyncd-VERSION.ARCH.rpm]
set -euo pipefail

deb="${1:?usage: test-package.sh FILE.deb [FILE.rpm]}"
rpm_file="${2:-}"
skip() { echo "test-package: skipped: $*"; exit 0; }
fail() { echo "test-package: FAIL: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || skip "not root"
command -v dpkg >/dev/null 2>&1 || skip "no dpkg"
[ -f "$deb" ] || fail "$deb: no such package (make package)"
conf=/etc/sersyncd/confxml.xml

# One run at a time on this machine: dpkg has one database.
exec 9>/tmp/sersyncd-test-package.lock
flock 9

if dpkg-query -W -f='${Status}' sersyncd 2>/dev/null | grep -q installed; then
	skip "a sersyncd package is installed here"
fi
[ ! -e /etc/sersyncd ] || skip "/etc/sersyncd exists here"

# Every path the package holds, and which of them existed before (/usr,
# /etc, ...: shared, they stay).
mapfile -t paths < <(dpkg-deb --fsys-tarfile "$deb" | tar -t | sed 's#^\./#/#; s#/$##' | grep -v '^/\?$')
if [ -n "$rpm_file" ] && command -v rpm >/dev/null 2>&1; then
	deb_files="$(dpkg-deb --fsys-tarfile "$deb" | tar -tv | awk '$1 ~ /^-/ { sub(/^\./, "", $6); print $6 }' | sort)"
	rpm_files="$(rpm -qlp "$rpm_file" 2>/dev/null | grep -v '^/var/lib/sersyncd$' | sort)"
	[ "$deb_files" = "$rpm_files" ] || fail "the .rpm holds other files than the .deb:"$'\n'"$rpm_files"$'\n'"vs"$'\n'"$deb_files"
	rpm -qlp "$rpm_file" 2>/dev/null | grep -qx /var/lib/sersyncd || fail "the .rpm has no /var/lib/sersyncd"
	[ "$(rpm -qp --configfiles "$rpm_file" 2>/dev/null)" = "$conf" ] || fail "the .rpm does not mark $conf as its config"
	echo "test-package: $(basename "$rpm_file"): the same files, $conf its config"
fi
existed=()
for p in "${paths[@]}"; do
	if [ -e "$p" ]; then existed+=("$p"); fi
done

installed=0
cleanup() {
	if [ "$installed" = 1 ]; then
		dpkg --purge sersyncd >/dev/null 2>&1 || true
	fi
}
trap cleanup EXIT

dpkg -i "$deb" >/dev/null || fail "dpkg -i $deb"
installed=1

out="$(/usr/bin/sersyncd --version)" || fail "sersyncd --version: exit $?"
[[ "$out" == "sersyncd "* ]] || fail "sersyncd --version printed: $out"
out="$(sersyncd check -o "$conf" 2>&1)" || fail "sersyncd check -o $conf: $out"
grep -q '^localpath: ' <<<"$out" || fail "sersyncd check printed no settings: $out"
dpkg-query -W -f='${Conffiles}\n' sersyncd | grep -q " $conf " || fail "$conf is not a conffile"
[ "$(stat -c %a /var/lib/sersyncd)" = 700 ] || fail "/var/lib/sersyncd: mode $(stat -c %a /var/lib/sersyncd), want 700"
[ -s /usr/share/man/man1/sersyncd.1.gz ] || fail "no man page"
unit=/usr/lib/systemd/system/sersyncd.service
exec_start="$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit")"
[ "$exec_start" = /usr/bin/sersyncd ] || fail "$unit starts $exec_start, not the packaged binary"
if command -v systemd-analyze >/dev/null 2>&1; then
	out="$(systemd-analyze verify --man=no "$unit" 2>&1)" || fail "systemd-analyze verify $unit: $out"
	[ -z "$out" ] || fail "systemd-analyze verify $unit: $out"
fi
printf '<!-- edited -->\n' >>"$conf"

dpkg -r sersyncd >/dev/null || fail "dpkg -r sersyncd"
left=()
for p in "${paths[@]}"; do
	case "$p" in "$conf" | /etc/sersyncd) continue ;; esac
	was=0
	for e in "${existed[@]}"; do [ "$e" = "$p" ] && was=1; done
	if [ "$was" = 0 ] && [ -e "$p" ]; then left+=("$p"); fi
done
[ "${#left[@]}" = 0 ] || fail "left after dpkg -r: ${left[*]}"
tail -n1 "$conf" | grep -q edited || fail "dpkg -r did not keep the edited $conf"

dpkg --purge sersyncd >/dev/null || fail "dpkg --purge sersyncd"
installed=0
[ ! -e /etc/sersyncd ] || fail "/etc/sersyncd left after dpkg --purge"
echo "test-package: ok: installed, ran --version and check, removed (config kept), purged: $(basename "$deb")"
