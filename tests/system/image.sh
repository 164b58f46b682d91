#!/bin/bash
# Builds, once, the Debian 12 disk image that tests/system/run.py boots: a
# debootstrap (minbase) root with systemd as PID 1, bookworm's kernel and
# headers, DKMS, exactly the packages the .debs under test depend on (so an
# undeclared dependency of theirs fails the test), the test agent, and the
# bookworm-backports kernel and headers downloaded but not installed (the
# guest has no network and installs them offline). Prints "built DIR" or
# "cached DIR": the cache directory that holds disk.raw (a sparse ext4 image
# of the root, for /dev/vda), image.env (the two kernel versions, the package
# list), packages.txt (every package in the image) and build-seconds.
#
#   tests/system/image.sh DEB_DIR...   the directories of the .debs whose
#                                      Depends the image must carry
#
#   SYSTEM_CACHE    cache directory (default /var/cache/msrdrv-system); one
#                   image per hash of the package list and the scripts that
#                   go into it, older ones are removed
#   SYSTEM_MIRROR   Debian mirror (default http://deb.debian.org/debian)
#   SYSTEM_DISK_GB  size of the image (default 6; sparse)
set -euo pipefail
cd "$(dirname "$0")/../.."
# in_chroot, remove_tree, now, elapsed
# shellcheck source=tests/compat/lib.sh
. tests/compat/lib.sh

CACHE=${SYSTEM_CACHE:-/var/cache/msrdrv-system}
MIRROR=${SYSTEM_MIRROR:-http://deb.debian.org/debian}
SECURITY=${SYSTEM_SECURITY:-http://deb.debian.org/debian-security}
DISK_GB=${SYSTEM_DISK_GB:-6}
REL=bookworm
# The machine itself; python3 also runs the test agent (msrctl depends on it anyway).
BASE=(systemd systemd-sysv udev dbus linux-image-amd64 linux-headers-amd64 dkms python3)
AGENT=tests/system/agent

log() { printf 'system image: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot)"
[ $# -ge 1 ] || die "usage: tests/system/image.sh DEB_DIR..."

# What the packages under test declare: the first name of each alternative of
# Pre-Depends and Depends, without version or :any.
declared() {
	local deb field
	for deb in "$@"; do
		for field in Pre-Depends Depends; do
			dpkg-deb -f "$deb" "$field"
			echo
		done
	done | tr ',' '\n' | sed -e 's/|.*//' -e 's/(.*)//' -e 's/:any//' -e 's/[[:space:]]//g' | sed '/^$/d'
}
debs=()
for d in "$@"; do
	for f in "$d"/msrdrv-dkms_*.deb "$d"/msrctl_*.deb; do
		[ -f "$f" ] || die "no $(basename "$f") in $d"
		debs+=("$f")
	done
done
mapfile -t DEPS < <(declared "${debs[@]}" | sort -u)
log "declared dependencies of the .debs: ${DEPS[*]}"
mapfile -t PKGS < <(printf '%s\n' "${BASE[@]}" "${DEPS[@]}" | sort -u)

key=$( (printf '%s\n' "${PKGS[@]}" "disk=$DISK_GB" "mirror=$MIRROR"
	cat tests/system/image.sh tests/compat/lib.sh "$AGENT"/*) | sha256sum | cut -c1-16)
dir=$CACHE/$key
if [ -e "$dir/.ready" ]; then
	log "cached: $dir (built in $(cat "$dir/build-seconds") s)"
	echo "cached $dir"
	exit 0
fi

t0=$(now)
tmp=$dir.tmp
root=$tmp/tree
remove_tree "$root"
rm -rf "$tmp"
mkdir -p "$tmp"
buildlog=$tmp/build.log
: >"$buildlog"
# Runs a step under a time limit, its chatter to the build log.
step() {
	local limit=$1 what=$2
	shift 2
	log "$what"
	printf '\n### %s\n$ %s\n' "$what" "$*" >>"$buildlog"
	local rc=0
	# timeout runs programs, not functions: in_chroot and capt go along by text.
	# shellcheck disable=SC2016 # expanded by that bash
	timeout "$limit" bash -c "$(declare -f in_chroot capt)"'; root=$1; shift; "$@"' step "$root" "$@" \
		>>"$buildlog" 2>&1 || rc=$?
	if [ "$rc" = 124 ]; then
		die "$what did not finish in $limit s (log: $buildlog)"
	elif [ "$rc" != 0 ]; then
		tail -n 25 "$buildlog" >&2
		die "$what failed with exit $rc (log: $buildlog)"
	fi
}
# apt-get in the tree; INITRD=No (in_chroot) keeps kernel packages from making
# an initramfs here: one is made below, on purpose.
capt() {
	in_chroot "$root" apt-get -y -q -o Dpkg::Use-Pty=0 "$@"
}

# Own mount namespace: the /proc etc. that debootstrap mounts vanish with it.
step 1800 "debootstrap --variant=minbase $REL (a few minutes)" \
	unshare -m --propagation private debootstrap --variant=minbase "$REL" "$root" "$MIRROR"

cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR $REL main
deb $MIRROR $REL-updates main
deb $SECURITY $REL-security main
deb $MIRROR $REL-backports main
EOF
# Kept in the image: the guest installs with the same settings as the image
# build (its offline kernel install must want exactly what was downloaded),
# and nothing beyond Depends arrives through Recommends.
printf 'APT::Install-Recommends "false";\nAcquire::Retries "3";\n' >"$root/etc/apt/apt.conf.d/90msrdrv-systemtest"
# A host on a dated mirror snapshot says so in its apt config; so must the tree.
if apt-config dump 2>/dev/null | grep -qi '^Acquire::Check-Valid-Until "false"'; then
	echo 'Acquire::Check-Valid-Until "false";' >>"$root/etc/apt/apt.conf.d/90msrdrv-systemtest"
fi
cp /etc/resolv.conf "$root/etc/resolv.conf"

step 600 "apt-get update" capt update
step 1800 "installing ${PKGS[*]}" capt install --no-install-recommends "${PKGS[@]}"
step 300 "apt-get clean" capt clean

# The kernel-ABI upgrade's packages, downloaded now, installed by the guest
# offline: the same command line it will run, with --download-only.
step 900 "downloading the bookworm-backports kernel and headers" \
	capt install --download-only -t "$REL-backports" linux-image-amd64 linux-headers-amd64
rm -f "$root/var/cache/apt/archives/lock" "$root/var/cache/apt/archives/partial/"*

# shellcheck disable=SC2016 # dpkg-query's own ${...}
kver=$(in_chroot "$root" dpkg-query -W -f='${Depends}' linux-image-amd64 | tr ',|' '\n' |
	sed -n 's/^ *linux-image-\([^ ]*-amd64\).*/\1/p' | head -1)
bpo=("$root"/var/cache/apt/archives/linux-image-amd64_*.deb)
[ -f "${bpo[0]}" ] || die "no linux-image-amd64 .deb was downloaded from $REL-backports (log: $buildlog)"
newkver=$(dpkg-deb -f "${bpo[0]}" Depends | tr ',|' '\n' | sed -n 's/^ *linux-image-\([^ ]*-amd64\).*/\1/p' | head -1)
if [ -z "$kver" ] || [ -z "$newkver" ] || [ "$kver" = "$newkver" ]; then
	die "kernel versions: installed '$kver', backports '$newkver': want two different ones"
fi
log "kernels: $kver installed, $newkver downloaded"

# The machine: root on /dev/vda, a name, the agent.
echo "/dev/vda / ext4 defaults,errors=remount-ro 0 1" >"$root/etc/fstab"
echo msrdrv-system >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tmsrdrv-system\n' >"$root/etc/hosts"
: >"$root/etc/resolv.conf"
install -m 0755 "$AGENT/msrdrv-systemtest-agent" "$root/usr/local/sbin/"
install -m 0644 "$AGENT/msrdrv-systemtest.service" "$root/etc/systemd/system/"
step 120 "enabling the test agent" in_chroot "$root" systemctl enable msrdrv-systemtest.service
mkdir -p "$root/mnt/systemtest"

# Modules the first boot needs before the root is mounted (the guest's later
# initramfs builds find them by MODULES=dep; listed as well, to be sure).
printf '%s\n' virtio_pci virtio_blk ext4 >>"$root/etc/initramfs-tools/modules"
# The first boot's initramfs, with the default MODULES=most (every storage
# driver): made here, in the chroot, where MODULES=dep could only see the host.
step 900 "update-initramfs for $kver (MODULES=most)" in_chroot "$root" update-initramfs -c -k "$kver"
# In the guest: only what this machine needs (MODULES=most takes 15+ minutes under TCG).
mkdir -p "$root/etc/initramfs-tools/conf.d"
printf '# tests/system: the guest builds small initramfs images (TCG is slow)\nMODULES=dep\n' \
	>"$root/etc/initramfs-tools/conf.d/msrdrv-systemtest"

truncate -s "${DISK_GB}G" "$tmp/disk.raw"
step 900 "mkfs.ext4 -d (${DISK_GB} GiB sparse)" mkfs.ext4 -q -F -L msrdrv-system -d "$root" "$tmp/disk.raw"
{
	echo "KVER=$kver"
	echo "NEW_KVER=$newkver"
	echo "PACKAGES=\"${PKGS[*]}\""
	echo "DECLARED=\"${DEPS[*]}\""
} >"$tmp/image.env"
# shellcheck disable=SC2016
in_chroot "$root" dpkg-query -W -f='${Package} ${Version}\n' >"$tmp/packages.txt"
remove_tree "$root"
elapsed "$t0" >"$tmp/build-seconds"
# Only the newest image is kept: each holds a few GB.
for old in "$CACHE"/*/; do
	[ "${old%/}" = "$tmp" ] || remove_tree "${old%/}"
done
mv "$tmp" "$dir"
touch "$dir/.ready"
log "built $dir in $(cat "$dir/build-seconds") s"
echo "built $dir"
