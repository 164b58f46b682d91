"""`msrctl exporter`: the telemetry library's metrics for Prometheus, one msrdrv batch per scrape.

Modules, bottom up: families (the Prometheus names, types, units and labels of
each telemetry metric: data and pure functions), limits (RAPL power limits:
probed at start-up, read in each scrape's batch), collector (a prometheus_client
collector that reads the hardware once per scrape and keeps the energy
counters), listen (the --listen address: parsed, then bound with one-line
errors), server (HTTP on the bound socket until SIGTERM or Ctrl-C).  The units
are msrctl.telemetry's (derive), never worked out again here.
"""
