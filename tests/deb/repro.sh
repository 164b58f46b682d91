#!/bin/bash
# Reproducibility of the Debian packages (`make deb-repro`), checked with
# Debian's reprotest: a control build and a second build that differs in what
# must not matter have to give byte-identical .debs.
#
#   tests/deb/repro.sh [OUTDIR]       (default build/repro)
#
# The tree is copied as tests/deb/build.sh copies it (tracked files plus
# untracked ones git does not ignore) to OUTDIR/src/msrdrv-VERSION; reprotest
# (null virtual server: builds in /tmp on this machine) runs
# `dpkg-buildpackage -us -uc -b` there twice, with DEB_BUILD_OPTIONS=nocheck
# (the unit tests ran in `make deb`).  OUTDIR/reprotest.log has both builds;
# OUTDIR/store/{control,experiment-1} keeps the .debs.
#
# Varied in the second build (reprotest --variations=+all,-user_group, plus
# PYTHONHASHSEED 1 -> 7): environment, build_path, kernel (setarch uname),
# aslr, num_cpus (1 CPU -> all), time (faketime, months ahead),
# fileordering (disorderfs), domain_host (unshare --uts), home, locales
# (C.UTF-8 -> et_EE.UTF-8), exec_path, timezone (GMT+12 -> GMT-14), umask
# (022 -> 002; dpkg-buildpackage itself sets 0022 for debian/rules, though).
# All pass; both builds take about 20 s together.
#
# Not varied: user_group.  reprotest 0.7.23 (bookworm) runs every sudo as
# `sudo -h localhost ...`, which bookworm's sudo 1.9.13 refuses ("a remote
# host may only be specified when listing privileges"); with that worked
# around, the null server still has the other user write the .debs to the
# tree's parent, reprotest's private root-owned temporary directory, which it
# may not.  The same sudo problem rules out domain_host.use_sudo=1; as root
# the default (unshare without sudo) works.  The packages do not depend on
# the build user: Rules-Requires-Root: no, dpkg-deb records root:root.
#
# Installs reprotest and what its variations need (diffoscope, disorderfs,
# faketime, locales-all) and missing build dependencies with apt-get first.
# Closing line 'repro: N .debs identical' (exit 0) or 'repro: N of M .debs
# differ' after reprotest's diffoscope output (exit 1); a failed build or
# reprotest error exits 2.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
# shellcheck source=tests/deb/lib.sh
. tests/deb/lib.sh
OUT=$(realpath -m "${1:-build/repro}")
# Debian's own tools only, as in build.sh: no pyenv or venv python.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
unset PYTHONPATH VIRTUAL_ENV PYTHONHOME
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
apt_install() {
	echo "repro: installing $*"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

tools=()
for t in reprotest diffoscope disorderfs faketime locales-all; do
	# shellcheck disable=SC2016 # a dpkg-query format, not a shell expansion
	[ "$(dpkg-query -W -f='${Status}' "$t" 2>/dev/null)" = "install ok installed" ] || tools+=("$t")
done
((${#tools[@]} == 0)) || apt_install "${tools[@]}"

version=$(dpkg-parsechangelog -S Version)
src=$OUT/src/msrdrv-${version%-*}
rm -rf "$OUT"
copy_tree "$REPO" "$src"
if ! (cd "$src" && dpkg-checkbuilddeps >/dev/null 2>&1); then
	echo "repro: installing the build dependencies (apt-get build-dep)"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get build-dep -y -qq --no-install-recommends "$src" >/dev/null
fi

echo "repro: reprotest on msrdrv $version (log: $OUT/reprotest.log)"
t0=$(date +%s)
rc=0
# The control build's settings; reprotest varies them for the second one.
(
	cd "$src"
	umask 022
	PYTHONHASHSEED=1 TZ=UTC LC_ALL=C.UTF-8 reprotest --verbosity 1 \
		--variations=+all,-user_group --vary=environment.variables+=PYTHONHASHSEED=7 \
		--store-dir="$OUT/store" \
		-c 'DEB_BUILD_OPTIONS=nocheck dpkg-buildpackage -us -uc -b' . '../*.deb' -- null
) >"$OUT/reprotest.log" 2>&1 || rc=$?
echo "repro: reprotest took $(($(date +%s) - t0)) s, exit status $rc"
grep -E '^INFO:reprotest.build:' "$OUT/reprotest.log" | sed 's/^/  /' || true

debs=("$OUT"/store/control/*.deb)
if [ "$rc" -gt 1 ] || [ ! -e "${debs[0]}" ]; then
	tail -n 40 "$OUT/reprotest.log" >&2
	echo "repro: reprotest could not build both (status $rc); see $OUT/reprotest.log" >&2
	exit 2
fi
differ=0
for deb in "${debs[@]}"; do
	other=$OUT/store/experiment-1/$(basename "$deb")
	if cmp -s "$deb" "$other"; then
		echo "repro: $(basename "$deb") identical"
	else
		echo "repro: $(basename "$deb") differs" >&2
		differ=$((differ + 1))
	fi
done
if [ "$rc" -eq 1 ] || ((differ)); then
	cat "$OUT"/store/*.diffoscope.out >&2 2>/dev/null || true
	if ((differ)); then
		echo "repro: $differ of ${#debs[@]} .debs differ (diffoscope above; .debs in $OUT/store)" >&2
	else
		echo "repro: reprotest reports a difference (diffoscope above; $OUT/reprotest.log)" >&2
	fi
	exit 1
fi
echo "repro: ${#debs[@]} .debs identical under reprotest's variations"
