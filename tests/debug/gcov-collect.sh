#!/bin/sh
# In the guest (tests/guest/run.sh, when MSRDRV_GCOV_OUT is set): copy the
# module's coverage counts from debugfs to DIR on the shared results mount.
# The kernel keeps the counts of an unloaded module (gcov_persist=1) and adds
# them up again on the next load, so the copy covers every load of the run.
set -u
out=${1:?usage: gcov-collect.sh DIR}
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug
mkdir -p "$out"
list=$(mktemp)
find /sys/kernel/debug/gcov -name 'msrdrv*.gcda' > "$list" 2>/dev/null
n=0
while IFS= read -r f; do
	# debugfs reports size 0: read the file rather than trust cp.
	if cat "$f" > "$out/$(basename "$f")"; then
		n=$((n + 1))
		echo "gcov-collect: $f" >&2
	else
		# Lockdown (test_zz_lockdown.py) closes debugfs: run it in a boot of its own.
		rm -f "$out/$(basename "$f")"
		echo "gcov-collect: cannot read $f (lockdown: $(cat /sys/kernel/security/lockdown 2>/dev/null))" >&2
	fi
done < "$list"
rm -f "$list"
echo "gcov-collect: $n .gcda file(s) to $out" >&2
[ "$n" -gt 0 ]
