#!/bin/sh
# In-guest part of `make bench`: load the in-tree msr driver and msrdrv, then
# run the C and Python benchmarks, writing JSON into the results directory.
set -eu
R=${MSRDRV_RESULTS:?}
modprobe msr
insmod dkms/msrdrv.ko
udevadm settle
"$MSRDRV_BENCH_BIN" "${MSRDRV_BENCH_REPS:-2000}" 4096 > "$R/bench-c.json"
"${MSRDRV_PYTHON:-python3}" bench/pybench.py "${MSRDRV_BENCH_REPS:-2000}" > "$R/bench-py.json"
dmesg > "$R/bench-dmesg.txt"
