#!/bin/bash
# Build the Debian source package msrdrv and its binary packages msrdrv-dkms
# and msrctl (`make deb`), then check them all with lintian.
#
#   tests/deb/build.sh [OUTDIR]      (default build/deb)
#
# 1. The upstream tarball msrdrv_V.orig.tar.xz: the checkout (tracked files
#    plus untracked ones git does not ignore) without debian/, packed
#    reproducibly (sorted, owner 0, mtime of the changelog entry).
# 2. The source package (3.0 (quilt)): dpkg-source -b -> .dsc + .debian.tar.xz.
# 3. The binaries, built from that .dsc in a clean bookworm chroot by pbuilder
#    (base tarball cached in /var/cache/pbuilder/msrdrv-bookworm.tgz, refreshed
#    daily), which proves Build-Depends complete; the unit tests run there.
#    DEB_BUILDER=host builds on this machine instead (faster, no mirror needed).
# 4. lintian (errors and warnings fail) on the .changes: source and binaries.
#
# MSRDRV_DEB_VERSION=X.Y.Z builds the same tree as upstream version X.Y.Z
# (VERSION files rewritten and a changelog entry a minute newer added in the
# copy): the "newer release" of the upgrade tests.  Everything lands in OUTDIR; the checkout
# stays clean.  Missing tools are installed with apt-get first.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
# shellcheck source=tests/deb/lib.sh
. tests/deb/lib.sh
OUT=$(realpath -m "${1:-build/deb}")
BUILDER=${DEB_BUILDER:-chroot}
BASETGZ=${PBUILDER_BASETGZ:-/var/cache/pbuilder/msrdrv-bookworm.tgz}
MIRROR=${DEB_MIRROR:-http://deb.debian.org/debian}
SECURITY=${DEB_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# Debian's own tools only: no pyenv or venv python in the package build.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
unset PYTHONPATH VIRTUAL_ENV PYTHONHOME

log() { printf 'deb: %s\n' "$*"; }
die() {
	printf 'deb: %s\n' "$*" >&2
	exit 1
}
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo

case $BUILDER in
chroot | host) ;;
*) die "DEB_BUILDER=$BUILDER: use chroot (pbuilder, default) or host" ;;
esac

# Tools, and for a host build the build dependencies (first alternative).
missing=()
for tool in dpkg-source:dpkg-dev lintian:lintian xz:xz-utils; do
	command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [ "$BUILDER" = chroot ]; then
	command -v pbuilder >/dev/null || missing+=(pbuilder debootstrap)
elif ! unmet=$(dpkg-checkbuilddeps debian/control 2>&1); then
	unmet=${unmet#*Unmet build dependencies: }
	for dep in $(echo "$unmet" | sed -e 's/([^)]*)//g' -e 's/|[^ ]*//g'); do
		missing+=("$dep")
	done
fi
if ((${#missing[@]})); then
	log "installing ${missing[*]}"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- 1. the tree, and the upstream tarball ----------------------------------------
version=$(dpkg-parsechangelog -S Version)
upstream=${version%-*}
rm -rf "$OUT"
copy_tree "$REPO" "$OUT/tree"

if [ -n "${MSRDRV_DEB_VERSION:-}" ]; then
	[[ $MSRDRV_DEB_VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "MSRDRV_DEB_VERSION=$MSRDRV_DEB_VERSION: want X.Y.Z"
	upstream=$MSRDRV_DEB_VERSION
	version=$upstream-1
	echo "$upstream" >"$OUT/tree/dkms/VERSION"
	sed -i "s/^__version__ = .*/__version__ = \"$upstream\"/" "$OUT/tree/msrctl/_version.py"
	{
		printf 'msrdrv (%s) unstable; urgency=medium\n\n  * Rebuilt as %s for the upgrade tests.\n\n' "$version" "$upstream"
		printf ' -- msrdrv developer <dev@msrdrv.invalid>  %s\n\n' "$(date -R -u -d @$(($(cd "$REPO" && dpkg-parsechangelog -S Timestamp) + 60)))"
		cat "$OUT/tree/debian/changelog"
	} >"$OUT/tree/debian/changelog.new"
	mv "$OUT/tree/debian/changelog.new" "$OUT/tree/debian/changelog"
fi
src="$OUT/msrdrv-$upstream"
mv "$OUT/tree" "$src"

# Reproducible: sorted names, no owner names, normalised modes, the changelog's time.
epoch=$(cd "$src" && dpkg-parsechangelog -S Timestamp)
orig="$OUT/msrdrv_$upstream.orig.tar.xz"
tar -C "$OUT" --exclude="msrdrv-$upstream/debian" --sort=name --mtime="@$epoch" --owner=0 --group=0 \
	--numeric-owner --mode=u+rw,go-w,a+rX --format=gnu -cf - "msrdrv-$upstream" | xz -6 -T1 >"$orig"
log "upstream tarball $(basename "$orig"): $(tar -tJf "$orig" | grep -cv '/$') files"

# --- 2. the source package ----------------------------------------------------------
(cd "$OUT" && dpkg-source -b "msrdrv-$upstream") >"$OUT/source.log" 2>&1 || {
	cat "$OUT/source.log" >&2
	die "dpkg-source -b failed; log in $OUT/source.log"
}
dsc="$OUT/msrdrv_$version.dsc"
log "source package $(basename "$dsc")"

# --- 3. the binaries ----------------------------------------------------------------
# pbuilder's base tarball: made once (debootstrap, a few minutes), updated daily.
ensure_base() {
	local othermirror="deb $MIRROR bookworm-updates main|deb $SECURITY bookworm-security main"
	if [ ! -s "$BASETGZ" ]; then
		log "creating the clean bookworm chroot $BASETGZ (pbuilder create, a few minutes)"
		$SUDO mkdir -p "$(dirname "$BASETGZ")"
		$SUDO pbuilder create --distribution bookworm --mirror "$MIRROR" --othermirror "$othermirror" \
			--basetgz "$BASETGZ" >"$OUT/pbuilder-create.log" 2>&1 || {
			tail -n 30 "$OUT/pbuilder-create.log" >&2
			die "pbuilder create failed (mirror $MIRROR reachable?); log in $OUT/pbuilder-create.log"
		}
	elif [ -n "$(find "$BASETGZ" -mmin +1440)" ]; then
		log "updating the bookworm chroot (older than a day)"
		$SUDO pbuilder update --basetgz "$BASETGZ" --mirror "$MIRROR" --othermirror "$othermirror" \
			--override-config >"$OUT/pbuilder-update.log" 2>&1 || {
			tail -n 30 "$OUT/pbuilder-update.log" >&2
			die "pbuilder update failed; log in $OUT/pbuilder-update.log"
		}
	fi
}

t0=$(date +%s)
if [ "$BUILDER" = chroot ]; then
	ensure_base
	log "building $version from $(basename "$dsc") in a clean bookworm chroot (pbuilder)"
	# USENETWORK=no: the build itself must not need the network.
	$SUDO env DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-}" DEB_BUILD_PROFILES="${DEB_BUILD_PROFILES:-}" \
		pbuilder build --basetgz "$BASETGZ" --buildresult "$OUT" --logfile "$OUT/build.log" \
		"$dsc" >/dev/null 2>&1 || {
		tail -n 60 "$OUT/build.log" >&2
		die "pbuilder build failed; full log in $OUT/build.log"
	}
else
	log "building $version in $src (on this machine)"
	(cd "$src" && dpkg-buildpackage -us -uc) >"$OUT/build.log" 2>&1 || {
		tail -n 60 "$OUT/build.log" >&2
		die "dpkg-buildpackage failed; full log in $OUT/build.log"
	}
fi
log "built in $(($(date +%s) - t0)) s (log: $OUT/build.log)"
# The build ran the host unit tests (dh_auto_test), unless DEB_BUILD_OPTIONS has nocheck.
if [[ " ${DEB_BUILD_OPTIONS:-} " != *" nocheck "* ]]; then
	summary=$(grep -E '^[0-9]+ passed' "$OUT/build.log" | tail -1) ||
		die "the build log shows no unit test run (dh_auto_test)"
	log "unit tests in the build: $summary"
	# A skip in a clean chroot means a Build-Depends is missing (numpy, a compiler...).
	[[ $summary != *skipped* ]] || die "unit tests were skipped in the build: a build dependency is missing (pytest -rs)"
fi

# The full build's .changes (pbuilder also leaves a _source.changes beside it).
changes=$OUT/msrdrv_${version}_$(dpkg --print-architecture).changes
[ -s "$changes" ] || die "$changes missing after the build"
for f in "$OUT"/*.deb "$orig" "$OUT/msrdrv_$version.debian.tar.xz"; do
	printf 'deb: %-40s %7s bytes\n' "$(basename "$f")" "$(stat -c %s "$f")"
done

# --- 4. lintian -------------------------------------------------------------------
# The .changes covers the .dsc, both .debs and the .buildinfo. Errors and
# warnings fail; info tags are shown.
log "lintian $(lintian --version) on $(basename "$changes")"
lintian --display-info --fail-on error,warning "$changes" | tee "$OUT/lintian.txt"
log "lintian clean (no errors or warnings; source and binaries)"
