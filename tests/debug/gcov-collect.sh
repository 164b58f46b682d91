#!/bin/sh
# In the guest (tests/guest/run.sh, when MSRDRV_GCOV_OUT is set): copy the
# module's coverage counts from debugfs to DIR on the shared results mount.
# The kernel keeps the counts of an unloaded module (gcov_persist=1) and adds
# them up again on the next load, so the copy covers every load of the run.
set -u
out=${1:?usage: gcov-collect.sh DIR}
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug
mkdir -p "$out"
snap=/tmp/msrdrv-gcov-first
list=$(mktemp)
find /sys/kernel/debug/gcov -name 'msrdrv*.gcda' > "$list" 2>/dev/null
n=0
while IFS= read -r f; do
	# debugfs reports size 0: read the file rather than trust cp.
	if cat "$f" > "$out/$(basename "$f")"; then
		n=$((n + 1))
		echo "gcov-collect: $f" >&2
	else
		# Lockdown (test_zz_lockdown.py) closes debugfs.  The guest's
		# conftest took a copy just before that test: keep it, and say so.
		lock=$(cat /sys/kernel/security/lockdown 2>/dev/null)
		rm -f "$out/$(basename "$f")"
		if [ -s "$snap/$(basename "$f")" ]; then
			cp "$snap/$(basename "$f")" "$out/"
			n=$((n + 1))
			echo "gcov-collect: cannot read $f (lockdown: $lock); kept the copy from before test_zz_lockdown.py" >&2
		else
			echo "gcov-collect: cannot read $f (lockdown: $lock)" >&2
		fi
	fi
done < "$list"
rm -f "$list"
# The first call's copies (before lockdown) stay for later calls to fall back on.
[ -d "$snap" ] || { mkdir -p "$snap" && cp "$out"/msrdrv*.gcda "$snap"/ 2>/dev/null; }
echo "gcov-collect: $n .gcda file(s) to $out" >&2
[ "$n" -gt 0 ]
