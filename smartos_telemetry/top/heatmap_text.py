"""A :class:`~smartos_telemetry.top.heatmap.Heatmap` as characters, for the live view.

Each line is a list of ``(text, style)`` runs so that the screen can colour
them: ``style`` is None (plain) or ``(kind, level)``, ``kind`` one of
``"shade"``, ``"p50"``, ``"p99"`` and ``level`` the cell's shade.  One
character per interval, the newest at the right; the latency axis on the
left (each row's lower edge), the time axis below (seconds before the
newest interval's end).  A cell's character goes darker with its events,
on a log scale (:data:`SHADES`); the row holding the interval's p50 shows
``5``, the one holding its p99 ``9`` (``9`` where both fall in one row).
"""

import math

from smartos_telemetry.top import heatmap as hm

#: a cell's character by shade level (0: no events)
SHADES = " .:+#@"
LEVELS = len(SHADES) - 1
LABEL = 7  # the latency axis: a label and a space, then "|"
MARKS = {"p50": "5", "p99": "9"}


def map_width(width):
    """How many intervals a map ``width`` characters wide shows."""
    return max(1, width - LABEL - 1)


def lines(heatmap, width):
    """The map's rows (highest latency first), its axis and time labels and a legend."""
    columns = heatmap.columns[-map_width(width):]
    out = []
    marks = [(heatmap.row_of(c.p50), heatmap.row_of(c.p99)) for c in columns]
    for r in range(len(heatmap.rows) - 1, -1, -1):
        label = hm.short_ns(heatmap.rows[r][0])
        runs = [(f"{label:>{LABEL - 1}} |", None)]
        for column, (p50, p99) in zip(columns, marks, strict=True):
            shade = hm.level(column.cells[r], heatmap.peak, LEVELS)
            if r == p99:
                runs.append((MARKS["p99"], ("p99", shade)))
            elif r == p50:
                runs.append((MARKS["p50"], ("p50", shade)))
            else:
                runs.append((SHADES[shade], ("shade", shade)))
        out.append(_merge(runs))
    out.append([(" " * (LABEL - 1) + "+" + "-" * len(columns), None)])
    out.append([(time_axis(columns), None)])
    out.append([(legend(heatmap.peak), None)])
    return out


def _merge(runs):
    """Adjacent runs of one style as one (fewer writes to the terminal)."""
    merged = []
    for text, style in runs:
        if merged and merged[-1][1] == style:
            merged[-1] = (merged[-1][0] + text, style)
        else:
            merged.append((text, style))
    return merged


def time_axis(columns):
    """Seconds before the newest interval's end under every tenth column or so."""
    if not columns:
        return ""
    last = columns[-1].end
    line = [" "] * (LABEL + len(columns) + 6)
    edge = len(line)
    for i in range(len(columns) - 1, -1, -1):
        label = hm.short_seconds(last - columns[i].end)
        at = LABEL + i  # the label ends under its column
        start = at - len(label) + 1
        if at + 1 + 1 > edge or start < 0:
            continue
        if i != len(columns) - 1 and (len(columns) - 1 - i) % 10:
            continue
        line[start:at + 1] = label
        edge = start - 1
    return "".join(line).rstrip()


def legend(peak):
    """What the shades and marks mean: the fewest events of each shade."""
    if peak <= 0:
        return "no events in these intervals"
    parts = []
    for shade in range(1, LEVELS + 1):
        least = fewest(shade, peak)
        if least <= peak and (not parts or parts[-1][1] != least):
            parts.append((SHADES[shade], least))
    shades = " ".join(f"{c}>={n}" for c, n in parts)
    return f"events/cell (log): {shades}  {MARKS['p50']}=p50 {MARKS['p99']}=p99"


def fewest(shade, peak, levels=LEVELS):
    """The fewest events a cell needs for ``shade`` when the busiest has ``peak``."""
    if peak <= 1:
        return 1
    least = max(1, math.floor(peak ** ((shade - 1) / (levels - 1))))
    while hm.level(least, peak, levels) < shade:
        least += 1
    return least
