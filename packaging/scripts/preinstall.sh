#!/bin/sh
# bulwark preinstall (deb preinst, rpm %pre): create the bulwark user and
# group before the files are unpacked, so /etc/bulwark can be root:bulwark.
# The same lines are installed as /usr/lib/sysusers.d/bulwark.conf.
set -e

sysusers='u bulwark - "bulwark authentication daemon" /var/lib/bulwark -
m bulwark tss'

if command -v systemd-sysusers >/dev/null 2>&1; then
	printf '%s\n' "$sysusers" | systemd-sysusers --replace=/usr/lib/sysusers.d/bulwark.conf -
else
	# No systemd-sysusers (a container image, say): the same with shadow-utils.
	getent group tss >/dev/null 2>&1 || groupadd --system tss
	getent group bulwark >/dev/null 2>&1 || groupadd --system bulwark
	if ! getent passwd bulwark >/dev/null 2>&1; then
		useradd --system --gid bulwark --groups tss --home-dir /var/lib/bulwark \
			--no-create-home --shell /usr/sbin/nologin \
			--comment "bulwark authentication daemon" bulwark
	else
		usermod --append --groups tss bulwark
	fi
fi
exit 0
