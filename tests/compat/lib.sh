# shellcheck shell=bash
# Shared by tests/compat/*.sh: one debootstrap chroot per Debian release, with
# that release's gcc, make, linux-headers-amd64 and dkms, cached between runs.
#
#   COMPAT_CACHE    where the chroots live (default /var/cache/msrdrv-compat;
#                   outside the checkout so `make clean` never touches them)
#   COMPAT_MIRROR   Debian mirror (default http://deb.debian.org/debian)
#   COMPAT_REFRESH  hours after which a cached chroot is apt-upgraded before
#                   use (default 24; 0 = always, -1 = never)

COMPAT_CACHE=${COMPAT_CACHE:-/var/cache/msrdrv-compat}
COMPAT_MIRROR=${COMPAT_MIRROR:-http://deb.debian.org/debian}
COMPAT_SECURITY=${COMPAT_SECURITY:-http://deb.debian.org/debian-security}
COMPAT_REFRESH=${COMPAT_REFRESH:-24}
COMPAT_PKGS=(gcc make linux-headers-amd64 dkms kmod)

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }'; }
log() { printf 'compat: %s\n' "$*" >&2; }

# Runs a command inside the release's chroot, in a private mount namespace so
# that /proc, /sys and /dev vanish with it whatever happens.
in_chroot() {
	local root=$1
	shift
	unshare -m --propagation private /bin/sh -ec '
		root=$1; shift
		mount -t proc proc "$root/proc"
		mount -t sysfs sys "$root/sys"
		mount --rbind /dev "$root/dev"
		# INITRD=No: kernel packages that dkms pulls in skip update-initramfs.
		exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
			HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive INITRD=No "$@"
	' sh "$root" "$@"
}

write_sources() {
	local root=$1 rel=$2
	{
		echo "deb $COMPAT_MIRROR $rel main"
		case $rel in
		sid | unstable) ;;
		*)
			echo "deb $COMPAT_MIRROR $rel-updates main"
			echo "deb $COMPAT_SECURITY $rel-security main"
			;;
		esac
	} >"$root/etc/apt/sources.list"
	rm -f "$root/etc/apt/sources.list.d/"*
	printf 'APT::Install-Recommends "false";\nAcquire::Retries "3";\n' >"$root/etc/apt/apt.conf.d/90msrdrv-compat"
	# A host that reads a dated mirror snapshot (Valid-Until long past) says
	# so in its apt config; the chroots read the same mirror.
	if apt-config dump 2>/dev/null | grep -qi '^Acquire::Check-Valid-Until "false"'; then
		echo 'Acquire::Check-Valid-Until "false";' >>"$root/etc/apt/apt.conf.d/90msrdrv-compat"
	fi
	cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
}

# rm -rf that never crosses into a mount (a leftover /proc or /dev bind).
remove_tree() {
	[ -e "$1" ] || return 0
	umount -R "$1/proc" "$1/sys" "$1/dev" 2>/dev/null || true
	rm -rf --one-file-system "$1"
}

# apt-get in the chroot, its chatter to $COMPAT_CACHE/<rel>.setup.log.
chroot_apt() {
	local root=$1 rel=$2
	shift 2
	in_chroot "$root" apt-get -y -qq -o Dpkg::Use-Pty=0 "$@" >>"$COMPAT_CACHE/$rel.setup.log" 2>&1 || {
		log "$rel: apt-get $* failed; see $COMPAT_CACHE/$rel.setup.log"
		tail -n 15 "$COMPAT_CACHE/$rel.setup.log" >&2
		return 1
	}
}

# Makes sure $COMPAT_CACHE/<rel> exists and is ready; prints how it got there
# ("cached", "refreshed NN s", "created NN s") on stdout.
ensure_chroot() {
	local rel=$1 root=$COMPAT_CACHE/$1 t0 age
	t0=$(now)
	if [ -e "$root/.msrdrv-ready" ]; then
		age=$((($(date +%s) - $(stat -c %Y "$root/.msrdrv-ready")) / 3600))
		if [ "$COMPAT_REFRESH" -ge 0 ] && [ "$age" -ge "$COMPAT_REFRESH" ]; then
			log "$rel: refreshing the chroot (apt-get upgrade)"
			cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
			chroot_apt "$root" "$rel" update || return 1
			chroot_apt "$root" "$rel" install "${COMPAT_PKGS[@]}" || return 1
			chroot_apt "$root" "$rel" full-upgrade || return 1
			chroot_apt "$root" "$rel" autoremove --purge || true
			chroot_apt "$root" "$rel" clean || true
			touch "$root/.msrdrv-ready"
			echo "refreshed $(elapsed "$t0") s"
		else
			echo "cached"
		fi
		return
	fi
	command -v debootstrap >/dev/null || {
		log "installing debootstrap"
		apt-get install -y -qq debootstrap >&2
	}
	log "$rel: debootstrap --variant=minbase (a few minutes)"
	remove_tree "$root.tmp"
	mkdir -p "$COMPAT_CACHE"
	# Own mount namespace: the /proc etc. that debootstrap mounts vanish with it.
	unshare -m --propagation private debootstrap --variant=minbase "$rel" "$root.tmp" "$COMPAT_MIRROR" >"$COMPAT_CACHE/$rel.debootstrap.log" 2>&1 || {
		tail -20 "$COMPAT_CACHE/$rel.debootstrap.log" >&2
		return 1
	}
	write_sources "$root.tmp" "$rel"
	: >"$COMPAT_CACHE/$rel.setup.log"
	chroot_apt "$root.tmp" "$rel" update || return 1
	log "$rel: installing ${COMPAT_PKGS[*]}"
	chroot_apt "$root.tmp" "$rel" install "${COMPAT_PKGS[@]}" || return 1
	chroot_apt "$root.tmp" "$rel" full-upgrade || return 1
	chroot_apt "$root.tmp" "$rel" clean || true
	remove_tree "$root"
	mv "$root.tmp" "$root"
	touch "$root/.msrdrv-ready"
	# Kept: how long a fresh machine (no cache) needs for this chroot.
	elapsed "$t0" >"$COMPAT_CACHE/$rel.setup-seconds"
	echo "created $(elapsed "$t0") s"
}

# The kernel release that the chroot's linux-headers-amd64 points at.
chroot_kver() {
	local dep
	dep=$(in_chroot "$COMPAT_CACHE/$1" dpkg-query -W -f='${Depends}' linux-headers-amd64) || return 1
	# e.g. "linux-base-amd64 (= 7.2.13-1), linux-headers-7.2.13+deb14-amd64 (= 7.2.13-1)"
	dep=$(printf '%s\n' "$dep" | tr ',|' '\n\n' | sed -n 's/^ *linux-headers-\([^ ]*-amd64\).*/\1/p' | head -1)
	[ -n "$dep" ] && echo "$dep"
}

# Copies the module sources (tracked and untracked, no build outputs) to $2.
copy_sources() {
	local repo=$1 dest=$2
	rm -rf "$dest"
	mkdir -p "$dest"
	(cd "$repo/dkms" && git ls-files -co --exclude-standard . | tar -cf - -T -) | tar -xf - -C "$dest"
}
