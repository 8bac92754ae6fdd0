#!/bin/sh
# bulwark postremove (deb postrm, rpm %postun). The data directory is never
# deleted: it holds this node's sealed keys, its Raft log and the cluster
# CA, and losing it can lose the cluster's data. The user is kept too, as
# it still owns that directory.
set -e

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi

# deb: "purge" (after "remove"); rpm: $1 is 0 on erase (1 on upgrade).
case "$1" in
purge | 0)
	if [ -d /var/lib/bulwark ]; then
		cat <<'MSG'
bulwark: /var/lib/bulwark was left in place; it holds this node's sealed
keys, Raft log and cluster CA. Back it up or remove it yourself
(rm -rf /var/lib/bulwark) once you are sure the node's data is not needed.
MSG
	fi
	;;
esac
exit 0
