#!/bin/sh
# check.sh — static checks of bulwark.service, run by `make systemd-check`.
#
#  1. systemd-analyze verify: the unit and each example drop-in parse and
#     every setting is known. verify insists that ExecStart's binary
#     exists, so the unit is verified from a temporary copy whose ExecStart
#     points at a stand-in executable; nothing else is changed. Any output
#     (verify prints warnings for unknown keys yet exits 0) is a failure.
#  2. systemd-analyze security --offline=true: the exposure score must be
#     at most MAX_EXPOSURE (in tenths, as --threshold takes it: 15 = 1.5).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
unit=$here/bulwark.service
max=${MAX_EXPOSURE:-15}

command -v systemd-analyze >/dev/null || {
	echo "systemd-check: systemd-analyze not found (Debian: apt-get install systemd)" >&2
	exit 1
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

printf '#!/bin/sh\nexit 0\n' >"$tmp/bulwark"
chmod 0755 "$tmp/bulwark"

verify() { # verify DIR: verify DIR/bulwark.service, fail on any output
	out=$(systemd-analyze verify "$1/bulwark.service" 2>&1) || {
		printf '%s\n' "$out" >&2
		echo "systemd-check: systemd-analyze verify failed ($2)" >&2
		exit 1
	}
	if [ -n "$out" ]; then
		printf '%s\n' "$out" >&2
		echo "systemd-check: systemd-analyze verify warned ($2)" >&2
		exit 1
	fi
	echo "systemd-check: verify ok ($2)"
}

grep -q '^ExecStart=/usr/bin/bulwark serve ' "$unit" || {
	echo "systemd-check: ExecStart must run /usr/bin/bulwark serve" >&2
	exit 1
}
mkdir "$tmp/unit"
sed "s|^ExecStart=/usr/bin/bulwark |ExecStart=$tmp/bulwark |" "$unit" >"$tmp/unit/bulwark.service"
verify "$tmp/unit" "bulwark.service"
for d in "$here"/examples/*.conf; do
	[ -e "$d" ] || continue
	name=$(basename "$d")
	rm -rf "$tmp/unit/bulwark.service.d"
	mkdir "$tmp/unit/bulwark.service.d"
	cp "$d" "$tmp/unit/bulwark.service.d/$name"
	verify "$tmp/unit" "with examples/$name"
done

report=$(systemd-analyze security --offline=true --threshold="$max" "$unit" 2>&1) && rc=0 || rc=$?
level=$(printf '%s\n' "$report" | sed -n 's/.*Overall exposure level for bulwark.service: \([0-9.]*\).*/\1/p')
if [ -z "$level" ]; then
	printf '%s\n' "$report" >&2
	echo "systemd-check: no exposure level in systemd-analyze security output" >&2
	exit 1
fi
if [ "$rc" -ne 0 ]; then
	printf '%s\n' "$report" | grep '✗' >&2 || true
	echo "systemd-check: exposure level $level is above $(echo "$max" | sed 's/\(.\)$/.\1/')" >&2
	exit 1
fi
echo "systemd-check: exposure level $level (limit $(echo "$max" | sed 's/\(.\)$/.\1/'))"
