"""Every zone's latency heatmaps over a batch run as one self-contained SVG.

``smartos-dtrace-top -b -o heatmap`` (or ``--heatmap FILE.svg``): the
picture an operator attaches to a ticket.  Per zone (its name, id, kind
and instance UUID as a heading) one heatmap per latency meter: a column
per interval, a row per 1-2-5 latency band (:mod:`.heatmap`), each cell
coloured by its events on a log scale up to the heatmap's busiest cell,
the intervals' p50 and p99 drawn as lines, a latency axis, a time axis in
UTC and a legend.  No script, no stylesheet, no font or image from
elsewhere: it opens in any browser offline.

For programs reading it back, every element says what it shows:
``<g class="zone" data-name data-id>``, ``<g class="heatmap" data-meter
data-columns data-rows data-peak>``, and per interval ``<g class="column"
data-end data-seconds data-count data-p50 data-p99>`` holding a
``<rect class="cell" data-low data-high data-count>`` per non-empty cell
(``data-high`` exclusive, ns).  Names are escaped for display
(:func:`~smartos_telemetry.text_format.display_text`: XML cannot hold
control characters at all) and then for XML.
"""

import datetime
from xml.sax.saxutils import escape, quoteattr

from smartos_telemetry.text_format import display_text
from smartos_telemetry.top import heatmap as hm

#: the cells' colours by shade level, light (few events) to dark (many)
PALETTE = ("#fff5b8", "#fee391", "#fec44f", "#fe9929", "#ec7014", "#cc4c02",
           "#993404", "#662506", "#3d1503")
LEVELS = len(PALETTE)
EMPTY = "#f2f2f2"
P50_COLOUR, P99_COLOUR = "#1560bd", "#000000"
CELL_H = 10
LEFT = 70          # room for the latency axis
MAP_W = 720        # the map's width for a short run; a long one gets 2 px per interval
TICK_EVERY = 90    # px between time labels
FONT = 'font-family="monospace" font-size="11"'
CHAR_W = 6.7       # px per character of FONT, about (monospace fonts differ a little)
LEGEND_W = 840     # the legend's line


def _attr(value):
    return quoteattr(display_text("" if value is None else str(value)))


def _text(value):
    return escape(display_text(str(value)))


def _utc(wallclock, fmt="%H:%M:%S"):
    return datetime.datetime.fromtimestamp(wallclock, datetime.timezone.utc).strftime(fmt)


def _iso(wallclock):
    when = datetime.datetime.fromtimestamp(wallclock, datetime.timezone.utc)
    return when.isoformat(timespec="milliseconds")


def document(history, platform, engine, host=""):
    """The SVG text of every zone History holds, each meter's heatmap."""
    zones = sorted((z for z, _ in history.zones.values()), key=lambda z: (z.name, str(z.id)))
    intervals = list(history.intervals)
    cell_w = max(2, min(16, MAP_W // max(1, len(intervals))))
    width = LEFT + cell_w * len(intervals) + 30
    width = max(width, LEGEND_W)
    body, y = [], 8
    if intervals:
        start = intervals[0][1] - intervals[0][2]
        span = f"{_utc(start, '%Y-%m-%d %H:%M:%S')} to {_utc(intervals[-1][1])} UTC, " \
               f"{len(intervals)} intervals of {intervals[-1][2]:.1f} s"
    else:
        span = "no intervals"
    title = f"smartos-dtrace-top latency heatmaps  {host}  {platform}/{engine}"
    body.append(f'<text x="4" y="{y + 12}" font-size="13" font-weight="bold">'
                f'{_text(title)}</text><text x="4" y="{y + 28}">{_text(span)}</text>')
    y += 38
    body.append(_legend(y))
    y += 30
    for zone in zones:
        y = _zone(body, history, zone, y, cell_w)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width}" '
            f'height="{y + 10}" viewBox="0 0 {width} {y + 10}" {FONT}>\n'
            f'<title>{_text(title)}</title>\n'
            f'<rect width="100%" height="100%" fill="white"/>\n'
            + "\n".join(body) + "\n</svg>\n")


def _legend(y):
    """The colour ramp and the two lines, once for the document."""
    text = "events per cell, log scale from 1 to the heatmap's busiest cell:"
    parts = [f'<g class="legend"><text x="4" y="{y + 11}">{escape(text)}</text>']
    x = 4 + round(CHAR_W * (len(text) + 1))
    for i, colour in enumerate(PALETTE):
        parts.append(f'<rect x="{x + 14 * i}" y="{y + 1}" width="14" height="12" '
                     f'fill="{colour}"/>')
    x += 14 * LEVELS + 20
    for label, colour, dash in (("p50", P50_COLOUR, ""), ("p99", P99_COLOUR,
                                                          ' stroke-dasharray="4 2"')):
        parts.append(f'<line x1="{x}" y1="{y + 7}" x2="{x + 24}" y2="{y + 7}" '
                     f'stroke="{colour}" stroke-width="1.5"{dash}/>'
                     f'<text x="{x + 28}" y="{y + 11}">{label}</text>')
        x += 70
    parts.append(f'<text x="{x}" y="{y + 11}">empty:</text><rect x="{x + 44}" y="{y + 1}" '
                 f'width="14" height="12" fill="{EMPTY}" stroke="#ccc"/></g>')
    return "".join(parts)


def _zone(body, history, zone, y, cell_w):
    heading = f"zone {display_text(zone.name)}  id {zone.id if zone.id is not None else '-'}" \
              f"  kind {zone.kind}  instance {display_text(zone.instance_uuid) or '-'}"
    body.append(f'<g class="zone" data-name={_attr(zone.name)} data-id={_attr(zone.id)}>')
    body.append(f'<text x="4" y="{y + 13}" font-size="13" font-weight="bold">'
                f'{escape(heading)}</text>')
    y += 22
    for meter in history.meters:
        y = _heatmap(body, hm.build(history, zone, meter), y, cell_w)
    body.append("</g>")
    return y + 6


def _heatmap(body, heat, y, cell_w):
    columns, rows = heat.columns, heat.rows
    events = sum(c.count for c in columns)
    label = hm.METER_LABELS.get(heat.meter, heat.meter)
    body.append(f'<g class="heatmap" data-meter={_attr(heat.meter)} '
                f'data-columns="{len(columns)}" data-rows="{len(rows)}" '
                f'data-peak="{heat.peak}">')
    what = f"{events} events; busiest cell {heat.peak}" if events else \
        "no events in these intervals"
    body.append(f'<text x="{LEFT}" y="{y + 11}">{escape(label)} latency ({heat.meter}): '
                f'{what}</text>')
    top = y + 16
    if not events:  # no grid to read: the intervals are there, empty
        body.extend(f'<g class="column" data-end="{_iso(c.end)}" data-seconds='
                    f'"{c.seconds:.3f}" data-count="0" data-p50="" data-p99=""/>'
                    for c in columns)
        body.append("</g>")
        return top + 4
    height = CELL_H * len(rows)
    bottom = top + height
    map_w = cell_w * len(columns)
    body.append(f'<rect x="{LEFT}" y="{top}" width="{max(map_w, 1)}" height="{height}" '
                f'fill="{EMPTY}"/>')
    for i, (low, _) in enumerate(rows):  # the latency axis: each row's lower edge
        ry = bottom - CELL_H * i
        body.append(f'<text x="{LEFT - 4}" y="{ry}" text-anchor="end" font-size="9">'
                    f'{hm.short_ns(low)}</text>')
    for i, column in enumerate(columns):
        x = LEFT + cell_w * i
        tip = f"{_utc(column.end)} UTC: {column.count} events"
        if column.count:
            tip += f", p50 {hm.short_ns(column.p50)}, p99 {hm.short_ns(column.p99)}"
        parts = [f'<g class="column" data-end="{_iso(column.end)}" '
                 f'data-seconds="{column.seconds:.3f}" data-count="{column.count}" '
                 f'data-p50={_attr(column.p50)} data-p99={_attr(column.p99)}>'
                 f'<title>{escape(tip)}</title>']
        for r, n in enumerate(column.cells):
            if n:
                colour = PALETTE[hm.level(n, heat.peak, LEVELS) - 1]
                parts.append(f'<rect class="cell" x="{x}" y="{bottom - CELL_H * (r + 1)}" '
                             f'width="{cell_w}" height="{CELL_H}" fill="{colour}" '
                             f'data-low="{rows[r][0]}" data-high="{rows[r][1]}" '
                             f'data-count="{n}"/>')
        parts.append("</g>")
        body.append("".join(parts))
    for stat, colour, dash in (("p50", P50_COLOUR, ""),
                               ("p99", P99_COLOUR, ' stroke-dasharray="4 2"')):
        for run in _runs(heat, stat, cell_w, bottom):
            body.append(f'<polyline class="{stat}" fill="none" stroke="{colour}" '
                        f'stroke-width="1.5"{dash} points="{run}"/>')
    body.append(f'<line x1="{LEFT}" y1="{bottom}" x2="{LEFT + map_w}" y2="{bottom}" '
                f'stroke="#555"/><line x1="{LEFT}" y1="{top}" x2="{LEFT}" y2="{bottom}" '
                f'stroke="#555"/>')
    step = max(1, TICK_EVERY // cell_w)
    for i in range(0, len(columns), step):  # the time axis: each labelled column's end
        x = LEFT + cell_w * (i + 1)
        body.append(f'<line x1="{x}" y1="{bottom}" x2="{x}" y2="{bottom + 3}" stroke="#555"/>'
                    f'<text x="{x}" y="{bottom + 13}" text-anchor="middle" font-size="9">'
                    f'{_utc(columns[i].end)}</text>')
    body.append("</g>")
    return bottom + 22


def _runs(heat, stat, cell_w, bottom):
    """``points`` of the lines through each interval's ``stat``, broken where an
    interval had no events."""
    runs, points = [], []
    for i, column in enumerate(heat.columns):
        value = getattr(column, stat)
        if value is None:
            if points:
                runs.append(points)
            points = []
            continue
        x = LEFT + cell_w * i + cell_w / 2
        points.append(f"{x:.1f},{bottom - CELL_H * heat.position(value):.1f}")
    if points:
        runs.append(points)
    # a lone interval still shows: a short stroke across its column
    return [" ".join(p) if len(p) > 1 else _stub(p[0], cell_w) for p in runs]


def _stub(point, cell_w):
    x, y = (float(v) for v in point.split(","))
    return f"{x - cell_w / 2:.1f},{y:.1f} {x + cell_w / 2:.1f},{y:.1f}"
