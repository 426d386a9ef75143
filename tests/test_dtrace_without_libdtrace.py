"""On a host without libdtrace (this Debian host) the package imports and the
dtrace engine says clearly why it cannot run."""

import subprocess
import sys

import pytest

from smartos_telemetry.engines import select
from smartos_telemetry.engines.dtrace import binding
from smartos_telemetry.engines.dtrace.consumer import DTraceConsumer
from smartos_telemetry.errors import EngineUnavailable


def test_import_works_and_using_the_engine_raises_a_typed_error():
    reason = DTraceConsumer.available()
    assert reason is not None and "<dtrace.h>" in reason
    with pytest.raises(EngineUnavailable) as info:
        DTraceConsumer("BEGIN { exit(0); }", "x.d").start()
    assert str(info.value).startswith("libdtrace not available: ")
    assert "fix:" in str(info.value)
    with pytest.raises(EngineUnavailable):
        binding.load_binding()


def test_explicit_dtrace_choice_is_refused_with_the_reason():
    with pytest.raises(EngineUnavailable, match="dtrace not available"):
        select.choose_engine("dtrace")


def test_run_script_exits_1_with_a_one_line_error(tmp_path):
    script = tmp_path / "x.d"
    script.write_text("BEGIN { exit(0); }\n")
    proc = subprocess.run(
        [sys.executable, "-m", "smartos_telemetry.cli.main", "run-script", str(script)],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "not available" in proc.stderr and "<dtrace.h>" in proc.stderr
    assert "Traceback" not in proc.stderr
