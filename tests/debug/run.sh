#!/bin/bash
# make test-debug: the in-guest suite under a debug kernel.  Builds (once,
# cached) Debian's bookworm kernel with KASAN, KFENCE, lockdep, UBSAN,
# DEBUG_OBJECTS and GCOV (tests/debug/kernel.sh), builds msrdrv against that
# tree with coverage, boots it under QEMU, runs tests/guest (or the tests
# given as arguments), then checks the guest's kernel log for sanitizer and
# lockdep reports and writes the module's line coverage.
#
#     tests/debug/run.sh [pytest args for the guest, e.g. tests/guest/test_msrdrv.py]
#
# Test files (all of tests/guest by default) run in MSRDRV_DEBUG_SHARDS
# guests at once (2; split by tests/debug/shards.py), other pytest arguments
# in one.  Results in
# results/debug/: shardN/ (files.txt, suite.log, guest.xml, dmesg.txt,
# gcov/*.gcda) per guest; findings.txt (the flagged dmesg lines of all),
# coverage.info, coverage.txt, html/ (the guests' coverage added up),
# summary.txt.
# MSRDRV_DEBUG_TEST_TIMEOUT: per-test limit in the guest (900 s: the debug
# kernel under TCG is several times slower); MSRDRV_DEBUG_TIMEOUT: the whole
# guest run (7200 s).  Exit status 0 only when every test passed and the log
# is clean.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
PY=${PY:-.venv/bin/python}
# The venv's vng and virtme-configkernel, even when PY is another venv's.
PATH=$(dirname "$PY"):$PATH
OUT=results/debug
T0=$(date +%s)
log() { printf '[%s +%4ds] test-debug: %s\n' "$(date -u +%H:%M:%S)" "$(($(date +%s) - T0))" "$*" >&2; }

log "debug kernel (tests/debug/kernel.sh)"
tree=$(tests/debug/kernel.sh | tail -1)
if [ -z "$tree" ] || [ ! -f "$tree/arch/x86/boot/bzImage" ]; then
	log "error: no debug kernel"
	exit 2
fi
t_kernel=$(($(date +%s) - T0))
log "kernel ready in ${t_kernel} s: $tree"

rm -rf "$OUT"
mkdir -p "$OUT"
t=$(date +%s)
"$PY" tests/suite.py --kdir "$tree" --gcov "$OUT" --build-only || { log "error: the module did not build against $tree"; exit 2; }

# Test files (the whole suite by default) run in MSRDRV_DEBUG_SHARDS guests
# at once (2), each on a share of them (tests/debug/shards.py); other pytest
# arguments run in one guest.
[ $# -eq 0 ] && set -- tests/guest/test_*.py
only_files=1
for a in "$@"; do [ -f "$a" ] || only_files=0; done
shards=()
if [ $only_files = 1 ]; then
	mapfile -t shards < <("$PY" tests/debug/shards.py "${MSRDRV_DEBUG_SHARDS:-2}" "$@")
else
	shards=("$(printf '%q ' "$@")")
fi
declare -A shard_of
shard_dirs=()
for i in "${!shards[@]}"; do
	d=$OUT/shard$((i + 1))
	shard_dirs+=("$d")
	mkdir -p "$d/gcov"
	echo "${shards[$i]}" >"$d/files.txt"
	log "shard$((i + 1)): ${shards[$i]}"
	eval "set -- ${shards[$i]}"
	# no5lvl: 4-level paging.  QEMU's "max" CPU has LA57, and 6.1's
	# identify_cpu() clears the boot CPU's feature words (LA57 with them)
	# with interrupts on: an interrupt in that window has KASAN misjudge a
	# 5-level direct-map address as wild (seen twice, at 2.7 s and 3.9 s
	# of boot, before any module loads).
	"$PY" tests/suite.py --no-build --kdir "$tree" --kernel-image "$tree" --gcov "$d/gcov" \
		--append no5lvl --debug-dmesg --results "$d" --timeout "${MSRDRV_DEBUG_TIMEOUT:-7200}" \
		-- --timeout="${MSRDRV_DEBUG_TEST_TIMEOUT:-900}" "$@" >"$d/suite.log" 2>&1 &
	shard_of[$!]=shard$((i + 1))
	# vng links the tree's modules into <tree>/.virtme_mods as it starts: let
	# one guest do that before the next starts ("ln: File exists" otherwise).
	[ $((i + 1)) -lt ${#shards[@]} ] && sleep 20
done
rc=0
while [ ${#shard_of[@]} -gt 0 ]; do
	wait -n -p pid
	src=$?
	s=${shard_of[$pid]}
	unset "shard_of[$pid]"
	[ "$src" -eq 0 ] || rc=1
	log "$s ended (exit $src): $(grep -E '^guest:' "$OUT/$s/suite.log" || echo 'no closing line')"
done
t_guest=$(($(date +%s) - t))
log "module build, boots and guest suite: ${t_guest} s (exit $rc); logs: $OUT/shard*/suite.log"

# Every flagged kernel-log line, with the shard it came from.
"$PY" - "${shard_dirs[@]/%//dmesg.txt}" >"$OUT/findings.txt" <<'PYEOF'
import sys
sys.path.insert(0, "tests")
import vm
from pathlib import Path
for arg in sys.argv[1:]:
    path = Path(arg)
    if not path.exists():
        print(f"{path}: missing (the guest did not finish)")
        continue
    for i, line in enumerate(path.read_text(errors="replace").splitlines()):
        if vm.DMESG_DEBUG_BAD.search(line):
            print(f"{path.parent.name}:{i + 1}: {line}")
PYEOF
log "dmesg: $(wc -l <"$OUT/findings.txt") flagged line(s) (results/debug/findings.txt)"

# Coverage: each guest's .gcda next to the build's .gcno, lcov per guest,
# then the sum.
cov="no coverage data"
infos=()
for d in "${shard_dirs[@]}"; do
	compgen -G "$d/gcov/*.gcda" >/dev/null || continue
	cp "$d"/gcov/*.gcda dkms/
	if lcov --quiet --capture --rc lcov_branch_coverage=1 --directory dkms --output-file "$d/coverage.info" 2>>"$OUT/lcov.log"; then
		infos+=(--add-tracefile "$d/coverage.info")
	fi
	rm -f dkms/*.gcda
done
if [ ${#infos[@]} -gt 0 ] &&
	lcov --quiet --rc lcov_branch_coverage=1 "${infos[@]}" --output-file "$OUT/coverage.info" 2>>"$OUT/lcov.log"; then
	"$PY" tests/debug/coverage.py "$OUT/coverage.info" >"$OUT/coverage.txt"
	genhtml --quiet --branch-coverage -o "$OUT/html" "$OUT/coverage.info" >>"$OUT/lcov.log" 2>&1 || true
	cov=$(tail -1 "$OUT/coverage.txt")
	cat "$OUT/coverage.txt"
elif compgen -G "$OUT/shard*/gcov/*.gcda" >/dev/null; then
	cov="lcov failed (results/debug/lcov.log)"
fi
log "$cov"
[ -s "$OUT/findings.txt" ] && rc=1

{
	echo "kernel tree: $tree"
	echo "kernel: $(cat "$tree/.msrdrv-debug-done")"
	echo "kernel step: ${t_kernel} s; module build + boots + guest suite: ${t_guest} s"
	for d in "${shard_dirs[@]}"; do
		echo "${d##*/}: $(cat "$d/files.txt")"
		grep -E '^(guest:|suite\.py:)' "$d/suite.log" | sed "s/^/  /"
	done
	echo "dmesg findings: $(wc -l <"$OUT/findings.txt")"
	echo "$cov"
	"$PY" tests/summary.py "${shard_dirs[@]/%//guest.xml}" | tail -1 | sed 's/^all:/guest, all shards:/'
} >"$OUT/summary.txt"
cat "$OUT/summary.txt"
exit "$rc"
