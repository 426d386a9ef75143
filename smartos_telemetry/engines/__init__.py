"""Tracing engines: each runs a script and returns typed Snapshots."""
