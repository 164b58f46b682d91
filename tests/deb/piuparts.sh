#!/bin/bash
# piuparts on the built .debs (`make deb-piuparts`): in a fresh copy of the
# clean bookworm chroot of `make deb`, install both packages with their
# dependencies from the mirror, purge them, install again and purge again;
# fails on a maintainer-script error or a file left behind.  The module is
# not built there (a chroot has no kernel headers: DKMS skips the build, as
# on a machine without them); the guest test (make test-deb) covers DKMS.
#
#   tests/deb/piuparts.sh [DEBDIR [JUNIT]]    (default build/deb; JUNIT: a
#   one-case JUnit file for tests/summary.py's closing line)
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=$(realpath -m "${1:-build/deb}")
JUNIT=${2:-}
junit() { # failures(0/1)
	[ -z "$JUNIT" ] || printf '<testsuite name="piuparts" tests="1" failures="%s" errors="0" skipped="0">%s</testsuite>\n' \
		"$1" '<testcase classname="piuparts" name="install_purge_install_purge"/>' >"$JUNIT"
}
[ -z "$JUNIT" ] || rm -f "$JUNIT"
BASETGZ=${PBUILDER_BASETGZ:-/var/cache/pbuilder/msrdrv-bookworm.tgz}
MIRROR=${DEB_MIRROR:-http://deb.debian.org/debian}

[ "$(id -u)" -eq 0 ] || { echo "piuparts: needs root (chroot)" >&2; exit 2; }
[ -s "$BASETGZ" ] || { echo "piuparts: no chroot at $BASETGZ; run make deb first" >&2; exit 2; }
debs=("$DIR"/*.deb)
[ -e "${debs[0]}" ] || { echo "piuparts: no .debs in $DIR; run make deb" >&2; exit 2; }
if ! command -v piuparts >/dev/null; then
	echo "piuparts: installing piuparts"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends piuparts >/dev/null
fi

# Left behind by systemd (pulled in for systemd-sysusers, which creates the
# group), not by these packages: its tmpfiles.d makes them and its purge
# keeps them.
ignore=(/root/.ssh/ /var/cache/private/ /var/lib/private/ /var/log/private/
	/var/lib/systemd/coredump/ /var/lib/systemd/pstore/)
log=$DIR/piuparts.log
t0=$(date +%s)
if piuparts --basetgz="$BASETGZ" --distribution=bookworm --mirror="$MIRROR main" \
	--install-purge-install "${ignore[@]/#/--ignore=}" --log-file="$log" "${debs[@]}" >/dev/null 2>&1; then
	junit 0
	echo "piuparts: passed: install, purge, install, purge of ${debs[*]##*/} ($(($(date +%s) - t0)) s; log $log)"
else
	junit 1
	grep -E "ERROR|FAIL" "$log" | head -20 >&2
	echo "piuparts: FAILED ($(($(date +%s) - t0)) s); log in $log" >&2
	exit 1
fi
