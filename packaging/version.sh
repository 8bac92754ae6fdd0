#!/bin/sh
# version.sh — the package version of this checkout, for nfpm.
#
#   tag v1.2.3 on HEAD                 1.2.3
#   4 commits after v1.2.3             1.2.3+4.gabcdef123456
#   no v* tag at all                   0.0.0~gitabcdef123456
#   uncommitted changes                ... .dirty appended
#
# Debian and RPM both accept these ('~' sorts before anything, so an
# untagged build is older than any release). The binary's own version
# (bulwark version) is `git describe --tags --always --dirty`, as in make
# build.
set -eu
cd "$(dirname "$0")/.."
d=$(git describe --tags --match 'v[0-9]*' --always --dirty --abbrev=12 2>/dev/null) || {
	echo 0.0.0~dev
	exit 0
}
case $d in
v[0-9]*)
	d=${d#v}
	base=${d%%-*}
	rest=${d#"$base"}
	rest=$(printf '%s' "${rest#-}" | tr - .)
	if [ -n "$rest" ]; then echo "$base+$rest"; else echo "$base"; fi
	;;
*)
	printf '0.0.0~git%s\n' "$(printf '%s' "$d" | sed 's/-dirty$/.dirty/')"
	;;
esac
