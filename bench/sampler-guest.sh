#!/bin/sh
# In-guest part of `make bench-sampler`: load msrdrv, then BLOCKS blocks of
# bench/sampler.c runs, one JSON line each in $MSRDRV_RESULTS/sampler.jsonl:
# the period sweep (kernel sampler and user-space loop interleaved, which goes
# first alternating), then both at JITTER_NS alone, then the spinners' idle
# baseline and both methods with spinners.
set -eu
R=${MSRDRV_RESULTS:?}
BIN=${MSRDRV_SAMPLER_BIN:?}
insmod dkms/msrdrv.ko
udevadm settle
out=$R/sampler.jsonl
rm -f "$out"
b=0
while [ "$b" -lt "${SAMPLER_BLOCKS:-3}" ]; do
	i=0
	for p in $SAMPLER_PERIODS; do
		if [ $(((b + i) % 2)) -eq 0 ]; then order="kernel user"; else order="user kernel"; fi
		for m in $order; do
			"$BIN" "$m" "$p" "$SAMPLER_SECONDS" | sed "s/^{/{\"block\": $b, \"kind\": \"sweep\", /" >> "$out"
		done
		i=$((i + 1))
	done
	for m in kernel user; do
		"$BIN" "$m" "$SAMPLER_JITTER_NS" "$SAMPLER_SECONDS" | sed "s/^{/{\"block\": $b, \"kind\": \"jitter\", /" >> "$out"
	done
	for m in idle kernel user idle; do
		"$BIN" "$m" "$SAMPLER_JITTER_NS" "$SAMPLER_SECONDS" spin | sed "s/^{/{\"block\": $b, \"kind\": \"cost\", /" >> "$out"
	done
	b=$((b + 1))
done
rmmod msrdrv
dmesg > "$R/sampler-dmesg.txt"
