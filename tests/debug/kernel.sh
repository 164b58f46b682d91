#!/bin/bash
# Build, once, the debug kernel that `make test-debug` boots: Debian's own
# bookworm source (linux-source-6.1), virtme-ng's small guest config, and the
# sanitizers and lock checkers (KASAN generic inline, KFENCE, lockdep with
# PROVE_LOCKING/PROVE_RCU, DEBUG_ATOMIC_SLEEP, UBSAN bounds and shift,
# DEBUG_OBJECTS) plus GCOV_KERNEL so the module alone can be built with
# coverage.  Everything the guest needs (virtio, 9p, overlayfs, ...) is built
# in: the tree has no modules of its own to install.
#
#     tests/debug/kernel.sh            prints the tree's path on its last line
#
# The tree is kept in /var/cache/msrdrv-debug-kernel/<source version>-<hash of
# the config recipe>/ (MSRDRV_DEBUG_CACHE overrides): a second run with the
# same source and recipe only prints the path.  An interrupted build resumes
# where make stopped.  Builds run at nice 19 with MSRDRV_DEBUG_JOBS jobs (2).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${MSRDRV_DEBUG_CACHE:-/var/cache/msrdrv-debug-kernel}
JOBS=${MSRDRV_DEBUG_JOBS:-2}
SRCPKG=linux-source-6.1
TARBALL=/usr/src/linux-source-6.1.tar.xz
T0=$(date +%s)

log() { printf '[%s +%4ds] kernel.sh: %s\n' "$(date -u +%H:%M:%S)" "$(($(date +%s) - T0))" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- packages -------------------------------------------------------------------
need=()
for p in "$SRCPKG" bc flex bison libelf-dev libssl-dev dwarves lcov xz-utils gcc make; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null ||
		die "apt-get install ${need[*]} failed (run apt-get update first?)"
fi
SRC_VER=$(dpkg-query -W -f='${Version}' "$SRCPKG")

VNG_BIN=$REPO/.venv/bin
[ -x "$VNG_BIN/virtme-configkernel" ] || VNG_BIN=$(dirname "$(command -v virtme-configkernel || echo /nonexistent/x)")
[ -x "$VNG_BIN/virtme-configkernel" ] || die "virtme-configkernel not found: run tests/bootstrap.sh"
VNG_VER=$("$VNG_BIN/vng" --version 2>/dev/null || echo unknown)

# --- the config recipe ----------------------------------------------------------
# Applied with scripts/config on top of `virtme-configkernel --defconfig`
# (x86_64_defconfig plus virtme-ng's guest options), then make olddefconfig.
# Format: OPTION=y|n|"string"|number.  Every line is checked afterwards.
RECIPE=$(
	cat <<'EOF'
# guest plumbing, built in (virtme-ng boots over 9p/virtiofs with overlays)
VIRTIO=y
VIRTIO_PCI=y
VIRTIO_CONSOLE=y
VIRTIO_BLK=y
NET_9P=y
NET_9P_VIRTIO=y
9P_FS=y
9P_FS_POSIX_ACL=y
FUSE_FS=y
VIRTIO_FS=y
OVERLAY_FS=y
TMPFS=y
TMPFS_POSIX_ACL=y
DEVTMPFS=y
DEVTMPFS_MOUNT=y
UNIX=y
# the module and what the tests exercise
MODULES=y
MODULE_UNLOAD=y
MODULE_FORCE_UNLOAD=y
MODVERSIONS=n
# SECURITY_LOCKDOWN_LSM selects MODULE_SIG: unsigned modules load (tainted)
SMP=y
HOTPLUG_CPU=y
X86_MSR=y
X86_CPUID=y
# the sampler's rings are charged to the caller's memory cgroup (test_sampler)
MEMCG=y
PERF_EVENTS=y
SECURITY=y
SECURITYFS=y
SECURITY_LOCKDOWN_LSM=y
SECURITY_LOCKDOWN_LSM_EARLY=y
LSM="lockdown,capability"
FTRACE=y
KPROBES=y
KPROBE_EVENTS=y
DYNAMIC_FTRACE=y
DEBUG_FS=y
IKCONFIG=y
IKCONFIG_PROC=y
# not needed by a console-only guest: less to build
DRM=n
SOUND=n
WLAN=n
WIRELESS=n
USB_SUPPORT=n
INPUT_JOYSTICK=n
INPUT_TABLET=n
INPUT_TOUCHSCREEN=n
PCCARD=n
ATA=n
AGP=n
SCSI=n
HID=n
FB=n
HIBERNATION=n
SUSPEND=n
EFI=n
X86_MCE_INJECT=n
DEBUG_INFO_NONE=y
DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT=n
DEBUG_INFO_BTF=n
LOCALVERSION="-msrdrv-debug"
LOCALVERSION_AUTO=n
# sanitizers and checkers
KASAN=y
KASAN_GENERIC=y
KASAN_INLINE=y
KASAN_OUTLINE=n
KFENCE=y
PROVE_LOCKING=y
PROVE_RCU=y
DEBUG_ATOMIC_SLEEP=y
UBSAN=y
UBSAN_BOUNDS=y
UBSAN_SHIFT=y
UBSAN_TRAP=n
DEBUG_OBJECTS=y
DEBUG_OBJECTS_FREE=y
DEBUG_OBJECTS_TIMERS=y
DEBUG_OBJECTS_WORK=y
DEBUG_OBJECTS_RCU_HEAD=y
# coverage for the module only (GCOV_PROFILE=y on its own make line)
GCOV_KERNEL=y
GCOV_PROFILE_ALL=n
EOF
)
HASH=$(printf '%s\n%s\n' "$RECIPE" "$VNG_VER" | sha256sum | cut -c1-12)
TREE=$CACHE/$SRC_VER-$HASH
STAMP=$TREE/.msrdrv-debug-done

if [ -f "$STAMP" ]; then
	log "cached: $TREE ($(cat "$STAMP"))"
	echo "$TREE"
	exit 0
fi
log "building $SRCPKG $SRC_VER, recipe $HASH, in $TREE"
mkdir -p "$CACHE"

if [ ! -f "$TREE/Makefile" ]; then
	rm -rf "$TREE.part"
	mkdir -p "$TREE.part"
	log "unpacking $TARBALL"
	tar -xJf "$TARBALL" -C "$TREE.part" --strip-components=1
	mv "$TREE.part" "$TREE"
	log "unpacked"
fi
cd "$TREE"

if [ ! -f .config ] || [ ! -f .msrdrv-config-done ]; then
	log "config: virtme-configkernel --defconfig, then the recipe"
	"$VNG_BIN/virtme-configkernel" --defconfig >config.log 2>&1 || { cat config.log >&2; die "virtme-configkernel failed"; }
	while IFS= read -r line; do
		case $line in '' | '#'*) continue ;; esac
		opt=${line%%=*} val=${line#*=}
		case $val in
		y) scripts/config --file .config --enable "$opt" ;;
		n) scripts/config --file .config --disable "$opt" ;;
		\"*) val=${val#\"} && scripts/config --file .config --set-str "$opt" "${val%\"}" ;;
		*) scripts/config --file .config --set-val "$opt" "$val" ;;
		esac
	done <<<"$RECIPE"
	nice -n 19 make olddefconfig >>config.log 2>&1 || { cat config.log >&2; die "make olddefconfig failed"; }
	# What olddefconfig dropped (an unmet dependency) fails here, by name.
	bad=0
	while IFS= read -r line; do
		case $line in '' | '#'*) continue ;; esac
		opt=${line%%=*} val=${line#*=}
		got=$(scripts/config --file .config --state "$opt") && got=${got//\"/}
		case $val in y) want=y ;; n) want=undef ;; *) want=${val//\"/} ;; esac
		[ "$val" = n ] && [ "$got" = n ] && continue
		if [ "$got" != "$want" ]; then
			log "config: CONFIG_$opt is '$got', the recipe asks '$val'"
			bad=1
		fi
	done <<<"$RECIPE"
	[ $bad = 0 ] || die "the config recipe did not apply (see above)"
	touch .msrdrv-config-done
	log "config done: $(grep -c '=y' .config) built in, $(grep -c '=m' .config) as modules"
fi

log "make -j$JOBS bzImage modules (nice 19)"
t=$(date +%s)
nice -n 19 make -j"$JOBS" bzImage modules >build.log 2>&1 || { tail -40 build.log >&2; die "kernel build failed (full log: $TREE/build.log)"; }
log "bzImage and modules built in $(($(date +%s) - t)) s"
nice -n 19 make -j"$JOBS" modules_prepare >>build.log 2>&1 || { tail -20 build.log >&2; die "make modules_prepare failed"; }
printf 'source %s, recipe %s, built %s in %d s\n' "$SRC_VER" "$HASH" "$(date -u +%FT%TZ)" "$(($(date +%s) - T0))" >"$STAMP"
log "done: $(cat "$STAMP")"
echo "$TREE"
