#!/bin/sh
# In-guest part of `make bench`: load the in-tree msr driver and msrdrv, then
# run BLOCKS independent blocks of the C and Python benchmarks (each a fresh
# process), one JSON line per block and side in the results directory.
set -eu
R=${MSRDRV_RESULTS:?}
: "${MSRDRV_BENCH_BIN:?}" "${MSRBENCH_LIB:?}"
modprobe msr
insmod dkms/msrdrv.ko
udevadm settle
rm -f "$R/bench-c.jsonl" "$R/bench-py.jsonl"
b=0
while [ "$b" -lt "${MSRDRV_BENCH_BLOCKS:-5}" ]; do
	"$MSRDRV_BENCH_BIN" "${MSRDRV_BENCH_REPS:-2000}" "${MSRDRV_BENCH_MAXOPS:-4096}" >> "$R/bench-c.jsonl"
	"${MSRDRV_PYTHON:-python3}" bench/pybench.py "${MSRDRV_BENCH_REPS:-2000}" "${MSRDRV_BENCH_RUNS:-2}" \
		"$([ "$b" -eq 0 ] && echo warm || echo hot)" >> "$R/bench-py.jsonl"
	b=$((b + 1))
done
dmesg > "$R/bench-dmesg.txt"
