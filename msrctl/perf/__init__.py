"""Performance counters: PMU detection, event encoding, and Region (count events around code)."""
