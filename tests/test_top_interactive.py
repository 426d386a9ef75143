"""smartos-dtrace-top's live view in a real terminal (tmux), for real (root, bpftrace).

Zone ``hot`` runs a CPU hog, ``cool`` sleeps.  The test starts the view in
an 80x24 (and a 160x40) tmux pane on a private tmux server, reads the
screen, presses the sort, filter, drill-down, help and quit keys and checks
what is shown; after ``q`` or Ctrl-C the terminal is back out of the
alternate screen with its cursor, the view exited 0 and none of its
bpftrace children is left.  Everything started is stopped by PID.
"""

import os
import signal
import subprocess
import time

import pytest
from linux_workloads import pid_alive, scratch_cgroups, wait_for
from top_helpers import REPO, children, hot_and_cool, plain_parent, svg_heatmaps, top_command

pytestmark = pytest.mark.root


class Pane:
    """One tmux pane running the view, on a tmux server of its own."""

    def __init__(self, argv, width, height):
        self.socket = f"st-test-top-{os.getpid()}-{time.monotonic_ns()}"
        command = " ".join(["env", f"PYTHONPATH={REPO}"] + argv) + \
            '; echo "EXIT=$?"; exec sleep 120'  # the shell stays: the pane is read after exit
        self.tmux("new-session", "-d", "-s", "top", "-x", str(width), "-y", str(height),
                  "-c", REPO, command)
        self.server_pid = int(self.tmux("display", "-p", "-t", "top", "#{pid}"))
        self.shell = int(self.tmux("display", "-p", "-t", "top", "#{pane_pid}"))
        assert wait_for(lambda: children(self.shell, "python3") or
                        children(self.shell, "python"), 10)
        self.pid = min(children(self.shell, "python3") | children(self.shell, "python"))

    def tmux(self, *args):
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True,
                              capture_output=True, text=True, timeout=10).stdout.strip()

    def screen(self):
        return self.tmux("capture-pane", "-p", "-t", "top").splitlines()

    def text(self):
        return "\n".join(self.screen())

    def keys(self, *keys):
        self.tmux("send-keys", "-t", "top", *keys)

    def wait(self, predicate, timeout=30):
        ok = wait_for(lambda: predicate(self.screen()), timeout, interval=0.2)
        assert ok, "screen was:\n" + self.text()

    def value(self, fmt):
        return self.tmux("display", "-p", "-t", "top", fmt)

    def close(self):
        for pid in (self.pid, self.shell):
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        try:
            self.tmux("kill-server")
        except subprocess.CalledProcessError:
            pass
        wait_for(lambda: not pid_alive(self.server_pid), 10)
        if pid_alive(self.server_pid):
            os.kill(self.server_pid, signal.SIGKILL)
        try:  # a killed server leaves its socket behind
            os.unlink(os.path.join(os.environ.get("TMUX_TMPDIR", "/tmp"),
                                   f"tmux-{os.getuid()}", self.socket))
        except FileNotFoundError:
            pass


def data_rows(screen):
    """Zone names of the table's rows, top to bottom."""
    header = next((i for i, line in enumerate(screen) if line.startswith("ZONE")), None)
    if header is None:
        return []
    rows = []
    for line in screen[header + 1:]:
        if not line.strip() or line.startswith(("q:quit", "filter:")):
            break
        rows.append(line.split()[0])
    return rows


def shown(screen):
    return any(line.startswith("ZONE") for line in screen) and len(data_rows(screen)) >= 1 \
        and "collecting" not in "\n".join(screen)


@pytest.fixture
def zones():
    with hot_and_cool() as cg:
        yield cg


def start(cg, width, height, *more):
    """The view in a ``width`` x ``height`` pane, showing all three rows; ``(pane, the
    pids of its bpftrace children)``.  ``more``: further arguments."""
    pane = Pane(top_command("-i", "1", "-e", "bpftrace", "--plain-parent", plain_parent(cg),
                            *more), width, height)
    try:
        pane.wait(lambda s: shown(s) and len(data_rows(s)) == 3)
        engine_pids = children(pane.pid, "bpftrace")
        assert len(engine_pids) == 3
    except BaseException:
        pane.close()
        raise
    return pane, engine_pids


def assert_clean_exit(pane, engine_pids):
    assert wait_for(lambda: "EXIT=" in pane.text(), 30), pane.text()
    assert "EXIT=0" in pane.text()
    assert not pid_alive(pane.pid)
    assert pane.value("#{alternate_on}") == "0"   # out of curses' screen
    assert pane.value("#{cursor_flag}") == "1"    # the cursor is back
    assert "stopped: probes detached" in pane.text()
    assert not [p for p in engine_pids if pid_alive(p)]


def test_sort_filter_drill_help_and_quit_in_80x24(zones):
    pane, engine_pids = start(zones, 80, 24)
    try:
        screen = pane.screen()
        assert len(screen) == 24 and all(len(line) <= 80 for line in screen)
        assert screen[0].startswith("smartos-dtrace-top linux/bpftrace every 1s")
        header = next(line for line in screen if line.startswith("ZONE")).split()
        for title in ("ZONE", "INSTANCE", "CPU%", "RUNQ50", "RUNQ99", "DISK99", "CONN99",
                      "RTT99", "RETX"):
            assert title in header, header
        assert "sort: CPU% [c] descending" in screen[1]
        assert screen[-1].startswith("q:quit ?:help Enter:zone h:heatmap /:filter sort:n i c R r d")
        rows = data_rows(screen)
        assert sorted(rows) == ["(host)", "cool", "hot"]
        assert rows.index("hot") < rows.index("cool")

        pane.keys("n")
        pane.wait(lambda s: "sort: ZONE [n] ascending" in s[1]
                  and data_rows(s) == ["(host)", "cool", "hot"])
        pane.keys("n")
        pane.wait(lambda s: "sort: ZONE [n] descending" in s[1]
                  and data_rows(s) == ["hot", "cool", "(host)"])
        pane.keys("r")
        pane.wait(lambda s: "sort: RUNQ99 [r] descending" in s[1])

        pane.keys("/", "h", "o")  # filters as it is typed: "(host)" and "hot"
        pane.wait(lambda s: s[-1].startswith("filter: ho_") and
                  sorted(data_rows(s)) == ["(host)", "hot"])
        pane.keys("t", "Enter")
        pane.wait(lambda s: "filter: hot (1 of 3)" in s[1] and s[-1].startswith("q:quit")
                  and data_rows(s) == ["hot"])

        pane.keys("Enter")  # drill into the selected (only) zone
        pane.wait(lambda s: s[1].startswith("zone hot ") and
                  any(line.startswith("cpu.runqueue.latency (ns): ") for line in s))
        text = pane.text()
        assert "kind cgroup" in text and "CPU% " in text
        assert "------------- Distribution ------------- count" in text
        assert any("|@" in line for line in pane.screen())  # a bar of the hog's run queue
        pane.keys("NPage")  # scrolls when there is more than a page
        pane.wait(lambda s: s[1].startswith("zone hot ") and " of " in s[-1])
        pane.keys("Escape")
        pane.wait(lambda s: data_rows(s) == ["hot"])
        pane.keys("Escape")  # clears the filter
        pane.wait(lambda s: len(data_rows(s)) == 3 and "filter" not in s[1])

        pane.keys("?")
        pane.wait(lambda s: any("sort keys" in line for line in s))
        pane.keys("x")  # any key: back
        pane.wait(lambda s: len(data_rows(s)) == 3)

        pane.keys("q")
        assert_clean_exit(pane, engine_pids)
    finally:
        pane.close()


def test_ctrl_c_leaves_terminal_and_kernel_clean_and_a_wide_terminal_shows_more(zones):
    pane, engine_pids = start(zones, 160, 40)
    try:
        # the pane's size, not the COLUMNS/LINES pytest exports (80x24)
        wide = ("RUNQMX", "DISK50", "IO/s", "CFAIL")  # no room for these in 80 columns
        pane.wait(lambda s: all(title in line.split() for line in s if line.startswith("ZONE")
                                for title in wide))
        pane.keys("n", "End", "Enter")  # the last by name: hot
        pane.wait(lambda s: s[1].startswith("zone hot "))
        pane.wait(lambda s: any(line.startswith("cpu.runqueue.latency (ns)") and
                                "disk.io.latency (ns)" in line for line in s))  # side by side
        pane.keys("C-c")
        assert_clean_exit(pane, engine_pids)
    finally:
        pane.close()


# -- names that differ only at the end, and the heatmap view -----------------------------

#: Nova-like names; the long ones differ from each other only at the end, and
#: are cut in 80 and 100 columns
NAMES = ("instance-00000095", "instance-00000096", "tenant-web-frontend-instance-00000095",
         "tenant-web-frontend-instance-00000096", "evil\x1b[2Jzone")


def shown_as(cell, names):
    """The names ``cell`` can be: itself, or the names it is a middle cut of."""
    from smartos_telemetry.text_format import display_text
    from smartos_telemetry.top.names import ELLIPSIS
    shown = {display_text(n): n for n in names}
    if cell in shown:
        return {shown[cell]}
    head, cut, tail = cell.partition(ELLIPSIS)
    assert cut and head and tail, cell  # both ends kept
    return {n for s, n in shown.items() if s.startswith(head) and s.endswith(tail)}


@pytest.mark.parametrize("width", [80, 100])
def test_names_that_differ_only_at_the_end_stay_apart(width):
    with scratch_cgroups(*NAMES) as cg:
        pane = Pane(top_command("-i", "1", "-e", "bpftrace", "--plain-parent",
                                plain_parent(cg)), width, 24)
        try:
            pane.wait(lambda s: shown(s) and len(data_rows(s)) == len(NAMES) + 1)
            screen = pane.screen()
            assert all(len(line) <= width for line in screen)
            rows = [r for r in data_rows(screen) if r != "(host)"]
            assert len(set(rows)) == len(NAMES), rows
            assert any("\u2026" in r or "~" in r for r in rows)  # some were cut
            meant = [shown_as(r, NAMES) for r in rows]
            assert all(len(m) == 1 for m in meant), list(zip(rows, meant, strict=True))
            assert {n for m in meant for n in m} == set(NAMES)
            # the escape sequence is shown, never run: the screen was not cleared
            assert "evil\\x1b[2Jzone" in rows or any("\\x1b" in r for r in rows), rows
            pane.keys("/", "e", "v", "i", "l", "Enter", "Enter")  # the whole name drilled into
            pane.wait(lambda s: s[1].startswith("zone evil\\x1b[2Jzone"))
            pane.keys("q")
            assert wait_for(lambda: "EXIT=0" in pane.text(), 30), pane.text()
        finally:
            pane.close()


def grid(screen):
    """The heatmap's map lines (a latency label, then ``|``)."""
    return [line for line in screen if len(line) > 8 and line[6:8] == " |"]


@pytest.mark.parametrize("width,height", [(80, 24), (160, 40)])
def test_the_heatmap_view_opens_switches_meter_and_goes_back(zones, width, height, tmp_path):
    svg = tmp_path / "live.svg"  # --heatmap with the live view: written when it quits
    pane, engine_pids = start(zones, width, height, "--heatmap", str(svg))
    try:
        pane.keys("/", "h", "o", "t", "Enter")
        pane.wait(lambda s: data_rows(s) == ["hot"])
        pane.keys("h")
        pane.wait(lambda s: "1:run queue" in s[1] and
                  any(line.startswith("zone hot  run queue latency") for line in s))
        time.sleep(3)  # a few intervals: a few columns
        screen = pane.screen()
        assert len(screen) <= height and all(len(line) <= width for line in screen)
        assert "2:disk I/O" in screen[1] and "4:TCP RTT" in screen[1]
        rows = grid(screen)
        assert rows, pane.text()
        assert any(set(line[8:]) - {" "} for line in rows)  # cells with events
        assert any(line.strip().startswith("+--") for line in screen)
        assert any(line.rstrip().endswith(" 0") for line in screen)  # the time axis
        assert any(line.startswith("events/cell (log): ") for line in screen)
        assert any(line.strip().endswith("s") or "ms" in line or "us" in line for line in rows)
        host = any(line.startswith("zone (host)  run queue latency") for line in screen)
        assert host == (height >= 40)  # a tall terminal shows the host's map too
        pane.keys("2")
        pane.wait(lambda s: any(line.startswith("zone hot  disk I/O latency") for line in s))
        pane.keys("Tab")
        pane.wait(lambda s: any(line.startswith("zone hot  TCP connect latency") for line in s))
        pane.keys("Escape")
        pane.wait(lambda s: data_rows(s) == ["hot"])
        pane.keys("Enter")  # from the drill-down too; back goes back there
        pane.wait(lambda s: s[1].startswith("zone hot"))
        pane.keys("h")
        pane.wait(lambda s: any(line.startswith("zone hot  TCP connect latency") for line in s))
        pane.keys("b")
        pane.wait(lambda s: any(line.startswith("cpu.runqueue.latency (ns): ") for line in s))
        pane.keys("q")
        assert_clean_exit(pane, engine_pids)
        assert "heatmaps written to " in pane.text()
        maps = svg_heatmaps(svg.read_text())
        assert set(maps) == {"hot", "cool", "(host)"}
        assert len(maps["hot"]["cpu.runqueue.latency"]) >= 4  # every interval it ran
    finally:
        pane.close()
