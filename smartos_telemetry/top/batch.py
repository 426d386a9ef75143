"""``smartos-dtrace-top -b``: one table or one JSON object per interval, like ``top -b``."""

import json
import time

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
        sleep=time.sleep):
    """Print ``count`` intervals (0: until interrupted) to ``out``; returns 0.

    ``top`` has taken its baseline sample: the first interval starts there.
    """
    columns = top.columns()
    due = clock() + interval
    done = 0
    while not count or done < count:
        sleep(max(0.0, due - clock()))
        frame = top.sample()
        due += interval
        if due < clock():  # fell behind (a slow snapshot): start afresh
            due = clock() + interval
        if output == "json":
            rows = m.sorted_rows(frame, frame.rows, sort, reverse)
            record = frame.as_json()
            record["zones"] = [r.as_json() for r in rows]
            out.write(json.dumps(record) + "\n")
        else:
            out.write("\n".join(frame_table(frame, columns, sort, reverse)) + "\n\n")
        out.flush()
        done += 1
    return 0
