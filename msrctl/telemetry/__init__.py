"""Telemetry in physical units (watts, joules, MHz, degrees C, percent) from MSRs,
one msrdrv batch per sample for every CPU.

    from msrctl.device.msrdrv import Device
    from msrctl.telemetry import cpu, probe, topology
    from msrctl.telemetry.derive import derive
    from msrctl.telemetry.plan import Plan, Reader

    topo = topology.read()
    with Device(write=False) as dev:
        found = probe.run(dev, cpu.read(), topo)          # what exists here, and why not
        plan = Plan(topo, found.sampled, found.context)   # the ops of one sample
        take = Reader(dev, plan)                          # one submit per call
        a = take(); time.sleep(1); b = take()
        print(derive(plan, a, b).packages)                # rows of metrics; None = absent

Modules, bottom up: msrs (the registers), topology, cpu, catalog (the metrics
and what each needs), metrics (the pure unit math), plan (the batch and raw
snapshots), probe (what this machine has), derive (raw -> metrics), sampler
(drift-free timing), totals and formats (for `msrctl record`), table (for
`msrctl top`).  Nothing here imports the CLI; the device (cffi) loads only
when a batch is built.
"""
