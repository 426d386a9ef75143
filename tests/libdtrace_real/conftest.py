"""Tests that run only inside tools/dtrace-sandbox, on a real libdtrace.

`make test` runs this directory there (Oracle DTrace 2.0.7, Debian sid root,
this host's kernel).  Anywhere else these tests fail loudly rather than
skip: a missing libdtrace here is a broken test setup, not a pass.
"""

import os
import sys

import pytest

# the host tests' workload helpers (tests/linux_workloads.py and friends)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from smartos_telemetry.engines.dtrace.consumer import DTraceConsumer  # noqa: E402


def pytest_collection_modifyitems(config, items):
    reason = DTraceConsumer.available()
    if reason is not None:
        raise pytest.UsageError(
            f"tests/libdtrace_real needs a real libdtrace: {reason}. "
            "Run them with: tools/dtrace-sandbox run -- python3 -m pytest tests/libdtrace_real")
