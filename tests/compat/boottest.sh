#!/bin/bash
# Boot test on another Debian release's newest kernel (issue 6), default sid:
# the in-guest suite (tests/suite.py) under QEMU exactly as `make test-guest`
# runs it for 6.1, with three differences forced by the kernel being foreign
# to this Debian 12 host:
#  - vmlinuz and modules come from the release's linux-image .deb, unpacked in
#    the release's chroot (tests/compat/lib.sh) and depmod'ed there;
#  - dkms/msrdrv.ko is built in that chroot (its kbuild tools and compiler),
#    into a copy of the checkout (build/compat/tree), so the checkout's own
#    dkms/msrdrv.ko (the 6.1 build) is never replaced;
#  - the kernel is shown to virtme-ng by read-only overlays on /boot and
#    /usr/lib/modules inside a private mount namespace: nothing is installed
#    on the host, so the kernel that `make test` picks does not change.
#
#   tests/compat/boottest.sh [RELEASE [PYTEST ARGS...]]
#                       default sid and all of tests/guest; closing line
#                       'guest: N passed, N failed, N skipped'
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
# shellcheck source=tests/compat/lib.sh
. tests/compat/lib.sh

[ "$(id -u)" -eq 0 ] || { echo "boottest.sh: needs root (chroot, mount namespace)" >&2; exit 2; }
rel=${1:-sid}
[ $# -eq 0 ] || shift
tests=${*:-all of tests/guest}
root=$COMPAT_CACHE/$rel
OUT=$REPO/build/compat
BOOTTSV=$REPO/tests/compat/boot.tsv
mkdir -p "$OUT"
t0=$(now)
ensure_chroot "$rel" >/dev/null
kver=$(chroot_kver "$rel")
kdir=/build/kimage-$kver

# 1. The kernel image package, unpacked.  Up to trixie linux-image-<kver>
#    holds vmlinuz and the modules; from 7.x (sid) it is a metapackage that
#    depends on linux-binary-<kver> (vmlinuz), linux-modules-<kver> and
#    linux-base-<kver>, which are fetched as well.
if [ ! -e "$root$kdir/.ready" ] || [ ! -e "$root$kdir/root/boot/vmlinuz-$kver" ]; then
	log "$rel: downloading and unpacking linux-image-$kver"
	in_chroot "$root" /bin/sh -ec '
		d=$1 k=$2
		rm -rf "$d"; mkdir -p "$d/deb"; cd "$d/deb"
		get() { apt-get -q -o APT::Sandbox::User=root download "$@"; }
		get "linux-image-$k"
		parts=$(dpkg-deb -f ./linux-image-*.deb Depends | tr ",|" "\n\n" |
			awk "{ print \$1 }" | grep -E "^linux-(binary|modules|base)-" || true)
		[ -z "$parts" ] || get $parts
		for f in ./*.deb; do dpkg-deb -x "$f" "$d/root"; done
		[ -d "$d/root/usr/lib/modules/$k" ] || {
			mkdir -p "$d/root/usr/lib"; mv "$d/root/lib/modules" "$d/root/usr/lib/"; }
		# 7.x ships vmlinuz (and config) in /usr/lib/modules/<kver>/ and
		# makes /boot/vmlinuz-<kver> in postinst; vm.py boots the latter.
		m=$d/root/usr/lib/modules/$k
		mkdir -p "$d/root/boot"
		[ -e "$d/root/boot/vmlinuz-$k" ] || ln "$m/vmlinuz" "$d/root/boot/vmlinuz-$k"
		[ -e "$d/root/boot/config-$k" ] || [ ! -e "$m/config" ] || ln "$m/config" "$d/root/boot/config-$k"
		depmod -b "$d/root/usr" "$k" 2>/dev/null || depmod -b "$d/root" "$k"
		ls "$d/root/usr/lib/modules/$k/modules.dep"
		touch "$d/.ready"
	' sh "$kdir" "$kver" >&2
fi
imgdeb=$(basename "$(ls "$root$kdir"/deb/linux-image-*.deb)")
[ -e "$root$kdir/root/boot/vmlinuz-$kver" ] || { echo "boottest.sh: no vmlinuz-$kver in $(ls "$root$kdir/deb")" >&2; exit 1; }

# 2. The module, built in the chroot, dropped into a copy of the checkout.
src=$root/build/msrdrv-boot
copy_sources "$REPO" "$src"
in_chroot "$root" make -s -C /build/msrdrv-boot "KVER=$kver" MSRDRV_WERROR=1 >&2
tree=$OUT/tree
rm -rf "$tree"
mkdir -p "$tree"
git ls-files -co --exclude-standard | tar --ignore-failed-read -cf - -T - 2>/dev/null | tar -xf - -C "$tree"
cp "$src/msrdrv.ko" "$tree/dkms/msrdrv.ko"
tprep=$(elapsed "$t0")

# 3. Boot it: tests/suite.py (its build step skipped) from the copy.
results=$OUT/boot-$kver
mkdir -p "$results"
log "$rel: booting $kver (prepared in $tprep s)"
t1=$(now)
set +e
unshare -m --propagation private /bin/sh -ec '
	mods=$1 boot=$2 tree=$3; shift 3
	mount -t overlay overlay -o "ro,lowerdir=$mods:/usr/lib/modules" /usr/lib/modules
	mount -t overlay overlay -o "ro,lowerdir=$boot:/boot" /boot
	cd "$tree"
	exec "$@"
' sh "$root$kdir/root/usr/lib/modules" "$root$kdir/root/boot" "$tree" \
	"$REPO/.venv/bin/python" tests/compat/boottest.py --kernel "$kver" --results "$results" -- "$@" 2>&1 | tee "$OUT/boot-$kver.log"
rc=${PIPESTATUS[0]}
set -e
tboot=$(elapsed "$t1")
line=$(grep -E '^guest: [0-9]+ passed' "$OUT/boot-$kver.log" | tail -1)
line=${line#guest: }
[ -n "$line" ] || line="no result"
[ "$rc" -eq 0 ] && res="pass: $line" || res="FAIL: $line"
vng=$("$REPO/.venv/bin/pip" show virtme-ng 2>/dev/null | sed -n 's/^Version: //p')
imgver=$(in_chroot "$root" dpkg-deb -f "$kdir/deb/$imgdeb" Version)
how="${imgdeb%%_*} $imgver, virtme-ng $vng; $tests"
touch "$BOOTTSV"
grep -v "	$kver	" "$BOOTTSV" >"$BOOTTSV.new" || true
printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$rel" "$kver" "$res" "$tboot" "$(date -u +%Y-%m-%d)" "$how" >>"$BOOTTSV.new"
mv "$BOOTTSV.new" "$BOOTTSV"
log "$rel: $kver boot test $res; prepare $tprep s, boot + suite $tboot s"
[ -s tests/compat/matrix.tsv ] && tests/compat/render.sh
exit "$rc"
