"""The admin's tools: loading the module, status and diagnosis, system probes, allowlists, the
protected-MSR mirror, the generated config files, and running ops with their failures explained."""
