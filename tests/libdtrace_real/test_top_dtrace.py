"""smartos-dtrace-top -b -o json on Oracle DTrace (in tools/dtrace-sandbox):
the same known workloads and checks as tests/test_top_batch.py on bpftrace.
top runs as a child process: it opens the one libdtrace consumer there."""

from top_helpers import json_against_workloads


def test_batch_json_on_dtrace_matches_the_workloads():
    records = json_against_workloads("dtrace")
    assert {r["engine"] for r in records} == {"dtrace"}
