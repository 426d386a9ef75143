"""Meters: the catalogue, and the reduction of snapshots to samples."""
