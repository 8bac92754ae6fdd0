#!/bin/sh
# build.sh — reproducible bulwark packages and release artefacts.
#
#   packaging/build.sh package   $DIST/bulwark_<version>-1_<arch>.deb and
#                                $DIST/bulwark-<version>-1.<rpm-arch>.rpm
#   packaging/build.sh release   the packages, plus
#                                $DIST/bulwark-<version>-linux-<arch>.tar.gz,
#                                $DIST/bulwark-<version>-linux-<arch>.cdx.json
#                                (CycloneDX SBOM) and $DIST/SHA256SUMS
#
# `make package` and `make release` run it. The environment may set:
#   GO                 go command (go)
#   DIST               output directory (dist)
#   VERSION            the binary's version (git describe --tags --always --dirty)
#   PKG_VERSION        the packages' version (packaging/version.sh)
#   SOURCE_DATE_EPOCH  every timestamp in the outputs (the last commit's time)
#   GOARCH             target architecture (go env GOARCH)
#   PACKAGERS          which packages to build ("deb rpm")
#
# Reproducible: the binary is built with CGO_ENABLED=0, -trimpath and an
# empty build id; nfpm and tar take every mtime from SOURCE_DATE_EPOCH and
# every mode and owner from nfpm.yaml or this script, never from the
# checkout. Two runs on one commit give byte-identical files
# (packaging/packaging_test.go checks the .deb).
set -eu
cd "$(dirname "$0")/.."

mode=${1:-package}
case $mode in
package | release) ;;
*)
	echo "usage: packaging/build.sh package|release" >&2
	exit 2
	;;
esac

GO=${GO:-go}
DIST=${DIST:-dist}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
PKG_VERSION=${PKG_VERSION:-$(sh packaging/version.sh)}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
GOARCH=${GOARCH:-$($GO env GOARCH)}
PACKAGERS=${PACKAGERS:-deb rpm}
export SOURCE_DATE_EPOCH GOARCH PKG_VERSION
TZ=UTC
LC_ALL=C
export TZ LC_ALL

case $GOARCH in
amd64) rpmarch=x86_64 ;;
arm64) rpmarch=aarch64 ;;
386) rpmarch=i386 ;;
arm) rpmarch=armv7hl ;;
*) rpmarch=$GOARCH ;;
esac

mkdir -p "$DIST"
BULWARK_BIN=$DIST/bulwark-linux-$GOARCH
export BULWARK_BIN

echo "build.sh: bulwark $VERSION (package $PKG_VERSION, linux/$GOARCH, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)"
CGO_ENABLED=0 GOOS=linux $GO build -trimpath -tags no_otel \
	-ldflags "-s -w -buildid= -X main.version=$VERSION" \
	-o "$BULWARK_BIN" ./cmd/bulwark

outputs=
for p in $PACKAGERS; do
	case $p in
	deb) out=$DIST/bulwark_${PKG_VERSION}-1_${GOARCH}.deb ;;
	rpm) out=$DIST/bulwark-${PKG_VERSION}-1.${rpmarch}.rpm ;;
	*)
		echo "build.sh: unknown packager $p" >&2
		exit 2
		;;
	esac
	rm -f "$out"
	$GO tool nfpm pkg --packager "$p" --config packaging/nfpm.yaml --target "$out"
	outputs="$outputs $(basename "$out")"
done

if [ "$mode" = release ]; then
	name=bulwark-${PKG_VERSION}-linux-${GOARCH}
	stage=$DIST/.stage
	rm -rf "$stage"
	mkdir -p "$stage/$name/systemd/examples" "$stage/$name/sysusers.d" "$stage/$name/tmpfiles.d"
	install -m 0755 "$BULWARK_BIN" "$stage/$name/bulwark"
	install -m 0644 README.md packaging/INSTALL.md packaging/bulwark.toml packaging/alerts.yml "$stage/$name/"
	install -m 0644 systemd/bulwark.service "$stage/$name/systemd/"
	install -m 0644 systemd/examples/*.conf "$stage/$name/systemd/examples/"
	install -m 0644 packaging/sysusers.conf "$stage/$name/sysusers.d/bulwark.conf"
	install -m 0644 packaging/tmpfiles.conf "$stage/$name/tmpfiles.d/bulwark.conf"
	chmod 0755 "$stage/$name" "$stage/$name/systemd" "$stage/$name/systemd/examples" \
		"$stage/$name/sysusers.d" "$stage/$name/tmpfiles.d"
	tar --sort=name --format=gnu --mtime="@$SOURCE_DATE_EPOCH" \
		--owner=0 --group=0 --numeric-owner -C "$stage" -cf - "$name" |
		gzip -9 -n >"$DIST/$name.tar.gz"
	rm -rf "$stage"
	outputs="$outputs $name.tar.gz"

	$GO run ./packaging/sbom -bin "$BULWARK_BIN" -name bulwark -version "$PKG_VERSION" \
		-o "$DIST/$name.cdx.json"
	outputs="$outputs $name.cdx.json"

	# shellcheck disable=SC2086 # outputs is a list of plain file names
	(cd "$DIST" && sha256sum $outputs >SHA256SUMS)
	outputs="$outputs SHA256SUMS"
fi

for f in $outputs; do
	echo "build.sh: $DIST/$f"
done
