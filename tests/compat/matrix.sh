#!/bin/bash
# Kernel compatibility matrix (issue 6): builds dkms/ with -Werror against the
# headers of each Debian release's linux-headers-amd64, inside a debootstrap
# chroot of that release (so its kbuild tools run on their own glibc and the
# compiler is the one the kernel was built with), then proves dkms.conf with
# `dkms build -k` there.
#
#   tests/compat/matrix.sh [RELEASE...]     default: bullseye bookworm trixie sid
#
# Updates this release's row of tests/compat/matrix.tsv (committed, like
# boot.tsv; other rows are kept), writes the logs to build/compat/, then
# regenerates tests/compat/results.md (tests/compat/render.sh).  Closing
# line: 'compat: N passed, N failed'.  See tests/compat/lib.sh for the cache.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
# shellcheck source=tests/compat/lib.sh
. tests/compat/lib.sh

[ "$(id -u)" -eq 0 ] || { echo "matrix.sh: needs root (debootstrap, chroot)" >&2; exit 2; }
RELEASES=("$@")
[ ${#RELEASES[@]} -gt 0 ] || RELEASES=(bullseye bookworm trixie sid)
OUT=$REPO/build/compat
mkdir -p "$OUT"
TSV=$REPO/tests/compat/matrix.tsv
# Rows of releases not rebuilt this time are kept.
touch "$TSV"

# 1. The chroots, all at once: debootstrap and apt wait on the mirror and the
#    disk more than on the CPU, so this takes about as long as the slowest.
t0=$(now)
for rel in "${RELEASES[@]}"; do
	rm -f "$OUT/$rel.setup"
	(ensure_chroot "$rel" >"$OUT/$rel.setup.tmp" && mv "$OUT/$rel.setup.tmp" "$OUT/$rel.setup") &
done
wait
log "chroots ready in $(elapsed "$t0") s"

passed=0 failed=0
for rel in "${RELEASES[@]}"; do
	root=$COMPAT_CACHE/$rel
	[ -s "$OUT/$rel.setup" ] || {
		log "$rel: chroot setup failed"
		failed=$((failed + 1))
		continue
	}
	setup=$(cat "$OUT/$rel.setup")
	# What a machine without the cache pays: the time this chroot took to make.
	fresh=$(cat "$COMPAT_CACHE/$rel.setup-seconds" 2>/dev/null || echo "?")
	log "$rel: chroot $setup (fresh setup took $fresh s)"
	kver=$(chroot_kver "$rel") || {
		log "$rel: cannot tell which kernel linux-headers-amd64 is for"
		failed=$((failed + 1))
		continue
	}
	hdrver=$(in_chroot "$root" dpkg-query -W -f='${Version}' "linux-headers-$kver" || echo "?")
	hdrdir=/usr/src/linux-headers-$kver
	# The compiler the headers select (Debian: CC = gcc-N in .kernelvariables).
	cc=$(sed -n 's/^CC *=.*\(gcc-[0-9][0-9]*\).*/\1/p' "$root$hdrdir/.kernelvariables" 2>/dev/null | head -1)
	cc=${cc:-gcc}
	ccver=$(in_chroot "$root" "$cc" --version | head -1 || true)
	ccver=${ccver#* (Debian }
	ccver="$cc ${ccver%%)*}"
	built_with=$(sed -n 's/^CONFIG_CC_VERSION_TEXT="\(.*\)"/\1/p' "$root$hdrdir/.config" 2>/dev/null || true)
	dkmsver=$(in_chroot "$root" dpkg-query -W -f='${Version}' dkms || echo "?")

	# 1. make -C dkms with -Werror.
	src=$root/build/msrdrv
	copy_sources "$REPO" "$src"
	blog=$OUT/$rel-build.log
	t0=$(now)
	if in_chroot "$root" make -C /build/msrdrv "KVER=$kver" MSRDRV_WERROR=1 >"$blog" 2>&1 &&
		[ -e "$src/msrdrv.ko" ]; then
		build=ok
	else
		build=FAIL
	fi
	tbuild=$(elapsed "$t0")
	warnings=$(grep -c -E 'warning:|\[-Werror' "$blog" || true)
	vermagic=$(in_chroot "$root" /sbin/modinfo -F vermagic /build/msrdrv/msrdrv.ko 2>/dev/null | cut -d' ' -f1 || true)
	[ "$build" = ok ] && [ "$vermagic" != "$kver" ] && build="FAIL (vermagic $vermagic)"
	log "$rel: $kver build $build, $warnings warnings, $tbuild s"

	# 2. dkms add/build -k/remove with the tree's dkms.conf, as dh_dkms
	#    would install it (PACKAGE_VERSION from dkms/VERSION).
	dlog=$OUT/$rel-dkms.log
	modver=$(cat dkms/VERSION)
	t0=$(now)
	rm -rf "$root/usr/src/msrdrv-$modver"
	copy_sources "$REPO" "$root/usr/src/msrdrv-$modver"
	sed -i "s/#MODULE_VERSION#/$modver/" "$root/usr/src/msrdrv-$modver/dkms.conf"
	if in_chroot "$root" /bin/sh -ec '
		m=msrdrv/$1 k=$2
		dkms remove "$m" --all >/dev/null 2>&1 || true
		dkms add "$m"
		dkms build "$m" -k "$k"
		dkms status "$m"
		ko=$(ls /var/lib/dkms/$m/$k/*/module/msrdrv.ko* | head -1)
		echo "built: $ko"
		modinfo -F vermagic "$ko" | grep -q "^$k "
		dkms remove "$m" --all
	' sh "$modver" "$kver" >"$dlog" 2>&1; then
		dkms=ok
	else
		dkms=FAIL
	fi
	tdkms=$(elapsed "$t0")
	rm -rf "$root/usr/src/msrdrv-$modver"
	log "$rel: dkms build -k $kver $dkms, $tdkms s"

	if [ "$build" = ok ] && [ "$dkms" = ok ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
	grep -v "^$rel	" "$TSV" >"$TSV.new" || true
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
		"$rel" "$kver" "$hdrver" "$ccver" "$built_with" "$build" "$warnings" "$tbuild" \
		"$dkms" "$dkmsver" "$tdkms" "$fresh" "$(date -u +%Y-%m-%d)" >>"$TSV.new"
	mv "$TSV.new" "$TSV"
done

tests/compat/render.sh
echo "compat: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
