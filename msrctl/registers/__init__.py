"""The register table, its schema, and the parsing of what users type: numbers, CPU lists,
bitfields and MSR names."""
