#!/bin/bash
# Build the Debian packages msrdrv-dkms and msrctl (`make deb`) and check them
# with lintian.  The build runs in a copy of the checkout (tracked files plus
# untracked ones git does not ignore) under build/deb/, so the checkout stays
# clean; the .debs, .changes and .buildinfo land in build/deb/.
#
#   tests/deb/build.sh [OUTDIR]      (default build/deb)
#
# Missing build dependencies (debian/control) and lintian are installed first
# with apt-get, as tests/bootstrap.sh does for the rest.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
OUT=$(realpath -m "${1:-build/deb}")
# Debian's own tools only: no pyenv or venv python in the package build.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
unset PYTHONPATH VIRTUAL_ENV PYTHONHOME

SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo

# Build dependencies from debian/control (first alternative, no versions).
missing=()
if ! unmet=$(dpkg-checkbuilddeps debian/control 2>&1); then
	unmet=${unmet#*Unmet build dependencies: }
	for dep in $(echo "$unmet" | sed -e 's/([^)]*)//g' -e 's/|[^ ]*//g'); do
		missing+=("$dep")
	done
fi
command -v lintian >/dev/null || missing+=(lintian)
if ((${#missing[@]})); then
	echo "deb: installing ${missing[*]}"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

version=$(dpkg-parsechangelog -S Version)
upstream=${version%-*}
src="$OUT/msrdrv-$upstream"
rm -rf "$OUT"
mkdir -p "$src"
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git -C "$REPO" ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
		tar --null -T - -cf - | tar -C "$src" -xf -
else # an unpacked tarball: everything but build outputs
	tar --exclude=./build --exclude=./results --exclude=./.venv --exclude='*.o' --exclude='*.ko' \
		--exclude='*.egg-info' -cf - . | tar -C "$src" -xf -
fi

echo "deb: building msrdrv $version in $src"
t0=$(date +%s)
(cd "$src" && dpkg-buildpackage -us -uc -b) > "$OUT/build.log" 2>&1 || {
	tail -n 60 "$OUT/build.log" >&2
	echo "deb: dpkg-buildpackage failed; full log in $OUT/build.log" >&2
	exit 1
}
echo "deb: built in $(($(date +%s) - t0)) s (log: $OUT/build.log)"
# The build ran the host unit tests (dh_auto_test), unless DEB_BUILD_OPTIONS has nocheck.
if [[ " ${DEB_BUILD_OPTIONS:-} " != *" nocheck "* ]]; then
	grep -Eq '^[0-9]+ passed' "$OUT/build.log" || {
		echo "deb: the build log shows no unit test run (dh_auto_test)" >&2
		exit 1
	}
	echo "deb: unit tests in the build: $(grep -E '^[0-9]+ passed' "$OUT/build.log" | tail -1)"
fi

changes=$(ls "$OUT"/msrdrv_"${version}"_*.changes)
for deb in "$OUT"/*.deb; do
	printf 'deb: %-40s %7s bytes, %5s KiB installed\n' "$(basename "$deb")" "$(stat -c %s "$deb")" \
		"$(dpkg-deb -f "$deb" Installed-Size)"
done

# The .changes covers both .debs and the .buildinfo. Errors and warnings
# fail the build; info tags are shown.
echo "deb: lintian $(basename "$changes")"
lintian --display-info --fail-on error,warning "$changes" | tee "$OUT/lintian.txt"
echo "deb: lintian clean (no errors or warnings)"
