"""``smartos-dtrace-top -b``: one table or one JSON object per interval, like
``top -b``; or, at the end, every zone's latency heatmaps as SVG."""

import json
import os
import socket
import time

from smartos_telemetry.text_format import tolerant
from smartos_telemetry.top import heatmap_svg
from smartos_telemetry.top import model as m


def frame_table(frame, columns, sort, reverse=False, width=None):
    """The lines of one interval as a table (every column when ``width`` is None)."""
    rows = m.sorted_rows(frame, frame.rows, sort, reverse)
    layout = m.fit(columns, width, rows)
    h = frame.health
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(frame.timestamp))
    lines = [f"smartos-dtrace-top  {when}  {frame.platform}/{frame.engine}  "
             f"interval {frame.interval:.2f} s  zones {len(frame.rows)}  "
             f"drops {h.total_drops}  errors {h.total_errors}  restarts {h.restarts}",
             m.header_line(layout).rstrip()]
    lines += [m.row_line(frame, row, layout).rstrip() for row in rows]
    return lines


def run(top, interval, count, output, out, sort, reverse=False, clock=time.monotonic,
        sleep=time.sleep, heatmap=None, buckets=False):
    """Print ``count`` intervals (0: until interrupted) to ``out``; returns 0.

    ``top`` has taken its baseline sample: the first interval starts there.
    ``output`` ``heatmap`` prints nothing per interval and the SVG of every
    zone's heatmaps at the end; ``heatmap``, a path, writes that SVG there
    besides.  The end is ``count`` intervals, or an interruption (Ctrl-C,
    SIGTERM): the SVG is written either way.  ``buckets``: JSON carries each
    distribution's interval histogram.
    """
    out = tolerant(out)  # names on an ASCII stdout: escaped, not UnicodeEncodeError
    try:
        _intervals(top, interval, count, output, out, sort, reverse, clock, sleep, buckets)
    finally:
        if heatmap is not None:  # first: stdout may be a closed pipe
            write_file(heatmap, svg(top))
        if output == "heatmap":
            out.write(svg(top))
            out.flush()
    return 0


def svg(top):
    return heatmap_svg.document(top.history, top.platform.name, top.engines.name,
                                socket.gethostname())


def write_file(path, text):
    """``text`` into ``path`` whole or not at all (a reader never sees half)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _intervals(top, interval, count, output, out, sort, reverse, clock, sleep, buckets):
    columns = top.columns()
    due = clock() + interval
    done = 0
    while not count or done < count:
        sleep(max(0.0, due - clock()))
        frame = top.sample()
        due += interval
        if due < clock():  # fell behind (a slow snapshot): start afresh
            due = clock() + interval
        if output == "heatmap":
            pass  # drawn at the end, from the model's history
        elif output == "json":
            rows = m.sorted_rows(frame, frame.rows, sort, reverse)
            record = frame.as_json()
            record["zones"] = [r.as_json(buckets) for r in rows]
            out.write(json.dumps(record) + "\n")
        else:
            out.write("\n".join(frame_table(frame, columns, sort, reverse)) + "\n\n")
        out.flush()
        done += 1
