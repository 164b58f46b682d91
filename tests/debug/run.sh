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
# Results in results/debug/: guest.xml, dmesg.txt, findings.txt (the flagged
# dmesg lines), gcov/*.gcda, coverage.info, coverage.txt, html/, summary.txt.
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
mkdir -p "$OUT/gcov"
[ $# -eq 0 ] && set -- tests/guest
t=$(date +%s)
"$PY" tests/suite.py --kdir "$tree" --kernel-image "$tree" --gcov "$OUT/gcov" \
	--debug-dmesg --results "$OUT" --timeout "${MSRDRV_DEBUG_TIMEOUT:-7200}" \
	-- --timeout="${MSRDRV_DEBUG_TEST_TIMEOUT:-900}" "$@" 2>&1 | tee "$OUT/suite.log"
rc=${PIPESTATUS[0]}
t_guest=$(($(date +%s) - t))
log "module build, boot and guest suite: ${t_guest} s (exit $rc)"

# Every flagged kernel-log line, with the report's first lines around it.
"$PY" - "$OUT/dmesg.txt" >"$OUT/findings.txt" <<'PYEOF'
import sys
sys.path.insert(0, "tests")
import vm
from pathlib import Path
path = Path(sys.argv[1])
lines = path.read_text(errors="replace").splitlines() if path.exists() else []
for i, line in enumerate(lines):
    if vm.DMESG_DEBUG_BAD.search(line):
        print(f"{i + 1}: {line}")
PYEOF
log "dmesg: $(wc -l <"$OUT/findings.txt") flagged line(s) (results/debug/findings.txt)"

# Coverage: the guest's .gcda next to the build's .gcno, then lcov.
cov="no coverage data"
if compgen -G "$OUT/gcov/*.gcda" >/dev/null; then
	cp "$OUT"/gcov/*.gcda dkms/
	if lcov --quiet --capture --rc lcov_branch_coverage=1 --directory dkms --output-file "$OUT/coverage.info" 2>"$OUT/lcov.log"; then
		"$PY" tests/debug/coverage.py "$OUT/coverage.info" >"$OUT/coverage.txt"
		genhtml --quiet --branch-coverage -o "$OUT/html" "$OUT/coverage.info" >>"$OUT/lcov.log" 2>&1 || true
		cov=$(tail -1 "$OUT/coverage.txt")
		cat "$OUT/coverage.txt"
	else
		cov="lcov failed (results/debug/lcov.log)"
	fi
	rm -f dkms/*.gcda
fi
log "$cov"

{
	echo "kernel tree: $tree"
	echo "kernel: $(cat "$tree/.msrdrv-debug-done")"
	echo "kernel step: ${t_kernel} s; module build + boot + guest suite: ${t_guest} s"
	grep -E '^(guest:|suite\.py:)' "$OUT/suite.log"
	echo "dmesg findings: $(wc -l <"$OUT/findings.txt")"
	echo "$cov"
} >"$OUT/summary.txt"
cat "$OUT/summary.txt"
exit "$rc"
