"""The register table, its schema, the CPU model table, and the parsing of what users type:
numbers, CPU lists, bitfields, MSR names and CPU models."""
