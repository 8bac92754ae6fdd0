#!/bin/sh
# bulwark postinstall (deb postinst, rpm %post).
#
# A fresh install is never started or enabled: the default configuration
# asks for TPM sealing and a node must be configured (seal.mode, listen
# addresses, node_name) before it first starts and creates its keys. An
# upgrade restarts a node that was running, and only such a node.
set -e

# deb: "configure <old-version>" ($2 empty on a first install);
# rpm: $1 is 1 on a first install, 2 or more on an upgrade.
upgrade=no
case "$1" in
configure) [ -n "${2:-}" ] && upgrade=yes ;;
[0-9]*) [ "$1" -ge 2 ] && upgrade=yes ;;
*) exit 0 ;; # abort-upgrade and the like: nothing to do
esac

if command -v systemd-sysusers >/dev/null 2>&1; then
	systemd-sysusers bulwark.conf || true
fi
if command -v systemd-tmpfiles >/dev/null 2>&1; then
	systemd-tmpfiles --create bulwark.conf || true
else
	install -d -m 0700 -o bulwark -g bulwark /var/lib/bulwark
fi

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	if [ "$upgrade" = yes ]; then
		# Restarts the node if it runs; leaves a stopped node stopped.
		systemctl try-restart bulwark.service || true
	fi
fi

if [ "$upgrade" = no ]; then
	cat <<'MSG'

bulwark is installed but not started.

  1. Edit /etc/bulwark/bulwark.toml. Its default seal.mode = "tpm" needs
     /dev/tpmrm0 (group tss); without a TPM, set seal.mode = "software"
     knowingly. Check node_name, api.listen and cluster.advertise.
  2. Start it and start it at boot:   systemctl enable --now bulwark
  3. Check it:                        systemctl status bulwark
                                      curl --cacert /var/lib/bulwark/ca.pem https://localhost:8443/readyz

State and keys live in /var/lib/bulwark (mode 0700, user bulwark).
Docs: /usr/share/doc/bulwark/. Prometheus alert rules: /usr/share/bulwark/alerts.yml

MSG
fi
exit 0
