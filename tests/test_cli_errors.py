"""Bad input to the ``smartos-telemetry`` command: one line naming the bad
input and the fix, a non-zero exit status, never a traceback."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*argv, timeout=120):
    proc = subprocess.run([sys.executable, "-m", "smartos_telemetry.cli.main", *argv],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)
    return proc.returncode, proc.stdout, proc.stderr


def error_lines(stderr):
    """The lines of stderr that are not start-up chatter of the libraries."""
    return [line for line in stderr.splitlines()
            if line.strip() and "oslo_service.backend" not in line
            and "smartos_telemetry.engines.select" not in line
            and not line.startswith(("/", "Eventlet", "we strongly", "If you are already",
                                     "framework", "https://eventlet", "  from eventlet"))]


def assert_one_error_line(rc, stderr, *needles):
    assert rc != 0
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in error_lines(stderr) if not line.startswith(("usage:", " "))]
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.mark.parametrize("line, needles", [
    ("engine = foo", ("engine", "foo", "one of auto, dtrace, bpftrace")),
    ("zone_ttl = -5", ("zone_ttl", "at least 1")),
    ("max_zones = 0", ("max_zones", "at least 1")),
    ("snapshot_timeout = nan", ("snapshot_timeout", "not a number")),
    ("platform = windows", ("platform", "one of auto, linux, smartos")),
    ("engine_options = zones:abc", ("engine_options", "zones:abc", "not an integer")),
    ("state_file = state.json", ("state_file", "not an absolute path")),
    # the kernel's refusal would read "Argument list too long"
    ("engine_options = zones:1000000", ("engine_options", "512,000,000 keys",
                                        "lower zones")),
])
def test_a_bad_option_is_one_line_naming_it(tmp_path, line, needles):
    conf = tmp_path / "ceilometer.conf"
    conf.write_text(f"[smartos]\n{line}\n")
    rc, out, err = cli("poll", "--once", "--interval", "0.1", "--config-file", str(conf))
    text = assert_one_error_line(rc, err, *needles)
    assert str(conf) in text or "engine_options" in text
    assert "Argument list too long" not in err
    assert out == ""


def test_a_missing_config_file_is_one_line():
    rc, _, err = cli("poll", "--once", "--config-file", "/nonexistent/ceilometer.conf")
    assert_one_error_line(rc, err, "--config-file /nonexistent/ceilometer.conf")


def test_upgrade_with_a_missing_config_file_is_one_line():
    rc, _, err = cli("upgrade", "--config-file", "/nonexistent/ceilometer.conf")
    assert_one_error_line(rc, err, "--config-file /nonexistent/ceilometer.conf")


@pytest.mark.parametrize("value", ["-1", "nan", "0", "inf", "soon"])
def test_a_bad_interval_is_one_line(value):
    rc, _, err = cli("poll", "--once", "--interval", value)
    assert rc == 2
    assert_one_error_line(rc, err, "--interval", repr(value))


def test_a_bad_duration_is_one_line():
    rc, _, err = cli("run-script", "--duration", "nan", os.path.join(
        REPO, "d_scripts", "linux", "runqueue.bt"))
    assert_one_error_line(rc, err, "--duration", "'nan'")


def test_run_script_on_a_binary_is_one_line():
    rc, _, err = cli("run-script", "/usr/bin/true")
    assert_one_error_line(rc, err, "/usr/bin/true", "not a script")


def test_check_with_a_missing_scripts_directory_is_an_error_naming_it():
    rc, out, err = cli("check", "--scripts", "/nonexistent")
    assert_one_error_line(rc, err, "--scripts /nonexistent", "no such directory")
    assert "every probe" not in out


def test_check_with_a_directory_of_no_scripts_is_an_error(tmp_path):
    rc, out, err = cli("check", "--scripts", str(tmp_path))
    assert_one_error_line(rc, err, str(tmp_path), "no .d or .bt scripts")
    assert "every probe" not in out


def test_poll_with_no_engine_is_one_line_and_a_non_zero_exit(tmp_path):
    # this host has no libdtrace (test_ceilometer_polling relies on it too)
    conf = tmp_path / "ceilometer.conf"
    conf.write_text(f"[smartos]\nengine = dtrace\nstate_file = {tmp_path / 'state.json'}\n")
    rc, out, err = cli("poll", "--once", "--interval", "0.1", "--config-file", str(conf))
    assert rc == 1 and out == ""
    assert "Traceback" not in err and ": disabled" not in err  # no line per pollster
    assert "Zone(" not in err  # no resource dumps
    lines = [line for line in err.splitlines() if "dtrace not available" in line]
    assert len(lines) == 1, lines
    assert "smartos-telemetry check" in lines[0]
    # the kstat pollsters, SmartOS only: one line for all of them, not an error
    kstat = [line for line in err.splitlines() if "kstat" in line]
    assert len(kstat) == 1 and "SmartOS only" in kstat[0] and "ERROR" not in kstat[0], kstat
