"""DTrace-powered per-zone telemetry for OpenStack Ceilometer.

Data flow, one module per step::

    d_scripts/                 the D and bpftrace programs
    engines/dtrace/            libdtrace (cffi)  -+
    engines/bpftrace/          bpftrace child    -+-> snapshot.Snapshot
    engines/select.py          which engine runs here
    zones/                     cgroup id / zonename -> tenant
"""
