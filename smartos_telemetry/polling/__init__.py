"""Ceilometer integration: options, the per-process telemetry service,
zone discovery and the pollsters (stevedore plugins)."""
