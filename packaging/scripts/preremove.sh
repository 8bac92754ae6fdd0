#!/bin/sh
# bulwark preremove (deb prerm, rpm %preun): stop and disable the node when
# the package is removed, not when it is upgraded (postinstall restarts it
# then).
set -e

# deb: "remove" (upgrades pass "upgrade"); rpm: $1 is 0 on erase.
case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl --no-reload disable --now bulwark.service || true
fi
exit 0
