"""Aggregations as text, laid out the way dtrace(1) prints them.

Scalars: one line per row, keys left, value right.  Histograms: dtrace's
``value  ---- Distribution ---- count`` table, one line per bucket from the
lowest to the highest non-empty one, bars of ``@`` scaled to the row total.
"""

from smartos_telemetry.snapshot import INT64_MAX, INT64_MIN, Average, Histogram, StdDev

BAR_WIDTH = 40

#: what a character that cannot be shown becomes: the common C escapes, else
#: its code point (``\x1b``, ``\u202e``)
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def display_text(text):
    """``text`` as it may be shown on a terminal, in a table or a picture:
    every character that is not printable (control characters, escape
    sequences' ESC, bidirectional overrides, zero-width marks) escaped as
    ``\\n``, ``\\x1b``, ``\\u202e``.  Names come from tenants (instance
    names, container names): raw, they could move the cursor, recolour the
    terminal or make two names look alike.  None stays None."""
    if text is None:
        return None
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _ESCAPES.get(c) or _code_point(ord(c))
                   for c in text)


def tolerant(stream):
    """``stream``, set to write a character its encoding lacks as an escape
    (``\\xe9``): text output to an ASCII stdout (LANG=C, PYTHONIOENCODING=ascii)
    must show a name such as ``café``, not end with UnicodeEncodeError."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="backslashreplace")
    return stream


def _code_point(n):
    if n < 0x100:
        return f"\\x{n:02x}"
    return f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def histogram_lines(hist, indent="  "):
    """dtrace-style distribution lines for one Histogram."""
    total = hist.count or 1
    lines = [f"{indent}{'value':>16}  {'-' * 13} Distribution {'-' * 13} count"]
    for b in hist.buckets:
        if b.low == INT64_MIN:
            label = f"< {b.high + 1}"
        elif b.high == INT64_MAX:
            label = f">= {b.low}"
        else:
            label = str(b.low) if b.low == b.high else f"{b.low}..{b.high}"
        bar = "@" * round(BAR_WIDTH * b.count / total)
        lines.append(f"{indent}{label:>16} |{bar:<{BAR_WIDTH}} {b.count}")
    return lines


def _scalar(value):
    if isinstance(value, (Average, StdDev)):
        return f"{value.value:.0f}"
    return str(value)


def aggregation_lines(agg):
    lines = [f"@{agg.name} ({agg.action})"]
    for key, value in sorted(agg.rows.items(), key=lambda kv: str(kv[0])):
        keys = "  ".join(str(k) for k in key)
        if isinstance(value, Histogram):
            lines.append(f"  {keys}" if keys else "")
            lines.extend(histogram_lines(value))
        else:
            lines.append(f"  {keys:<40} {_scalar(value):>20}")
    return lines


def snapshot_text(snapshot):
    lines = []
    for name in sorted(snapshot.aggregations):
        lines.extend(aggregation_lines(snapshot.aggregations[name]))
        lines.append("")
    return "\n".join(lines)
