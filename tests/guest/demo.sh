#!/bin/sh
# `make demo`, inside the throwaway guest: msrctl loads msrdrv, udev makes
# the node, and MSRs are read on every CPU through single batched ioctls,
# from the Python library and from the msrctl command line.
set -eu
export PYTHONPATH=$PWD PYTHONDONTWRITEBYTECODE=1
msrctl() { /usr/bin/python3 -m msrctl "$@"; }
getent group msr >/dev/null || groupadd --system msr
install -m 0644 udev/60-msrdrv.rules /etc/udev/rules.d/60-msrdrv.rules
udevadm control --reload

echo "\$ msrctl load --ko dkms/msrdrv.ko"
msrctl load --ko dkms/msrdrv.ko
ls -l /dev/msrdrv
echo
/usr/bin/python3 - <<'PYEOF'
from msrctl.device.msrdrv import Batch, Device

MSRS = {"IA32_APIC_BASE": 0x1B, "IA32_TSC_AUX": 0xC0000103, "IA32_EFER": 0xC0000080, "IA32_PAT": 0x277}
with Device() as dev:
    info = dev.info()
    cpus = range(info.nr_cpu_ids)
    batch = Batch(len(cpus) * (len(MSRS) + 1))
    slots = {c: [batch.read(msr, c) for msr in MSRS.values()] + [batch.rdtsc(c)] for c in cpus}
    failed = dev.submit(batch)  # one ioctl for every CPU and register
    print(f"msrdrv {info.version}, ABI {info.abi_version}: {len(batch)} ops on {len(cpus)} CPUs in one ioctl, "
          f"{failed} failed")
    print(f"{'CPU':>3}  " + "  ".join(f"{n:>18}" for n in [*MSRS, "TSC"]))
    for c, idx in slots.items():
        cells = [f"{batch.value(i):#18x}" if not batch.err(i) else f"{'err ' + str(batch.err(i)):>18}" for i in idx]
        print(f"{c:>3}  " + "  ".join(cells))
PYEOF
echo
echo "\$ msrctl read -a IA32_APIC_BASE"
msrctl read -a IA32_APIC_BASE
echo "\$ msrctl batch <<ops"
msrctl batch <<'OPS'
read  IA32_TSC_AUX cpus all
read  apic_base cpus all
rdtsc cpus all
OPS
echo "\$ msrctl status"
msrctl status || true
echo "\$ msrctl decode -a IA32_APIC_BASE"
msrctl decode -a IA32_APIC_BASE
echo "\$ msrctl record -i 100ms -n 3   (QEMU emulates none of the power/thermal MSRs: absent, with reasons)"
msrctl record -i 100ms -n 3 || true
