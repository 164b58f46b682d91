"""The device layer: msrdrv's ABI (cffi), the msrdrv device, the kernel's stock msr driver, the choice
between them, the CPUs ops can target, and ops with their results."""
