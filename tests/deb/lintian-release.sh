#!/bin/bash
# Lintian of another Debian release (default trixie) over the packages that
# tests/deb/build.sh made with bookworm (`make deb-lintian-trixie`).  Same
# policy as build.sh: errors and warnings fail, info tags are shown.
#
#   tests/deb/lintian-release.sh [RELEASE [DIR]]   (defaults: trixie build/deb)
#
# Lints every *.changes and *.dsc in DIR (a .dsc that a .changes there already
# lists is linted through it), together with the files they list.  lintian
# runs in the release's debootstrap chroot of tests/compat/lib.sh (cached in
# COMPAT_CACHE, default /var/cache/msrdrv-compat; created or refreshed as
# `make compat` does), into which lintian is installed once.  Writes the
# output to DIR/lintian-RELEASE.txt.  Needs root (chroot).  Closing line:
# 'lintian-RELEASE: clean ...' or the reason it failed; exit 0 / 1.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/compat/lib.sh
. tests/compat/lib.sh

REL=${1:-trixie}
DIR=$(realpath -m "${2:-build/deb}")
me="lintian-$REL"
fail() { echo "$me: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "$me: needs root (chroot)" >&2; exit 2; }

shopt -s nullglob
changes=("$DIR"/*.changes)
dscs=("$DIR"/*.dsc)
((${#changes[@]} + ${#dscs[@]})) || fail "no *.changes or *.dsc in $DIR (run tests/deb/build.sh first)"

# The file names a .changes or .dsc lists in its Files field.
listed_files() {
	awk '/^Files:/ { f = 1; next } f && /^[ \t]/ { print $NF; next } { f = 0 }' "$1"
}

# What lintian gets: every .changes, and each .dsc that no .changes lists.
targets=("${changes[@]}")
for dsc in "${dscs[@]}"; do
	seen=
	for c in "${changes[@]}"; do
		listed_files "$c" | grep -qxF "$(basename "$dsc")" && seen=1
	done
	[ -n "$seen" ] || targets+=("$dsc")
done

root=$COMPAT_CACHE/$REL
state=$(ensure_chroot "$REL") || fail "cannot set up the $REL chroot in $root"
log "$REL: chroot $state"
# shellcheck disable=SC2016 # a dpkg-query format, not a shell expansion
status=$(in_chroot "$root" dpkg-query -W -f='${Status}' lintian 2>/dev/null || true)
if [ "$status" != "install ok installed" ]; then
	log "$REL: installing lintian in the chroot"
	# Another job (make compat) may hold the chroot's dpkg lock for a while.
	chroot_apt "$root" "$REL" -o DPkg::Lock::Timeout=600 update || fail "apt-get update failed in the $REL chroot"
	chroot_apt "$root" "$REL" -o DPkg::Lock::Timeout=600 install lintian ||
		fail "cannot install lintian in the $REL chroot"
	chroot_apt "$root" "$REL" clean || true
fi

# The artifacts go to a private directory in the chroot's /tmp, readable by
# the unprivileged user lintian runs as there.
work=$(mktemp -d "$root/tmp/msrdrv-lintian.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"
for t in "${targets[@]}"; do
	cp -p "$t" "$work/"
	for f in $(listed_files "$t"); do
		[ -e "$DIR/$f" ] || fail "$(basename "$t") lists $f, which is not in $DIR"
		cp -p "$DIR/$f" "$work/"
		# A .changes of a source upload lists the .dsc, which lists the tarballs.
		case $f in *.dsc) for g in $(listed_files "$DIR/$f"); do cp -p "$DIR/$g" "$work/"; done ;; esac
	done
done
chmod -R a+rX "$work"

inside=()
for t in "${targets[@]}"; do inside+=("/tmp/${work##*/}/$(basename "$t")"); done
version=$(in_chroot "$root" lintian --version) || fail "lintian does not run in the $REL chroot"
echo "$me: $version on ${inside[*]##*/}"
out=$DIR/lintian-$REL.txt
# As nobody: lintian warns when it runs as root.
rc=0
in_chroot "$root" setpriv --reuid=nobody --regid=nogroup --clear-groups \
	/usr/bin/env HOME=/tmp lintian --display-info --fail-on error,warning "${inside[@]}" \
	>"$out" 2>&1 || rc=$?
# The chroot's paths mean nothing outside it.
sed -i "s|/tmp/${work##*/}/||g" "$out"
cat "$out"
errors=$(grep -c '^E: ' "$out" || true)
warnings=$(grep -c '^W: ' "$out" || true)
if [ "$rc" -ne 0 ]; then
	if ((errors + warnings)); then
		fail "$version: $errors error(s), $warnings warning(s) (output in $out)"
	fi
	fail "$version exited with status $rc (output in $out)"
fi
echo "$me: clean with $version (no errors or warnings; output in $out)"
