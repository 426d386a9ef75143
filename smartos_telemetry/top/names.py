"""Zone names and instance UUIDs in a column narrower than they are.

What tells zones apart is usually the end of their names (instance
numbers, UUID tails, container ids), so a name too long for its column is
cut in the middle -- its head, an ellipsis, its tail -- and the split
between head and tail is chosen so that the names on screen stay distinct
wherever some split can keep them so.  :func:`distinct_width` says how
wide a column must be for that; the table gives it that room before any
column of lower priority.  Names are escaped for display first
(:func:`~smartos_telemetry.text_format.display_text`): a control character
never reaches the terminal, and widths are those of what is shown.
"""

import functools
import locale

from smartos_telemetry.text_format import display_text


def _ellipsis():
    try:
        "\u2026".encode(locale.getpreferredencoding(False))
        return "\u2026"
    except (UnicodeEncodeError, LookupError):
        return "~"


#: one character where a name was cut ("~" where the terminal's encoding has no "...")
ELLIPSIS = _ellipsis()


def middle_cut(text, width, tail=None):
    """``text`` in at most ``width`` characters: head, :data:`ELLIPSIS`, tail.

    ``tail`` characters of the end are kept (default: half, the odd one to
    the tail)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    keep = width - 1
    tail = (keep + 1) // 2 if tail is None else max(0, min(tail, keep))
    return text[:keep - tail] + ELLIPSIS + (text[len(text) - tail:] if tail else "")


def _tails(width):
    """The splits to try, the even one first, then ever more of the end."""
    keep = width - 1
    even = (keep + 1) // 2
    return [even] + [t for t in range(keep, 0, -1) if t != even]


@functools.lru_cache(maxsize=64)
def distinct_tail(texts, width):
    """A tail length at which the ``texts`` (a frozenset) stay distinct when
    cut to ``width``, or None.  Cached: the names on screen change rarely
    between draws."""
    long = [t for t in texts if len(t) > width]
    if not long:
        return width // 2
    if width < 3:
        return None
    for tail in _tails(width):
        shown = {middle_cut(t, width, tail) for t in long}
        if len(shown) == len(long) and not shown & (texts - set(long)):
            return tail
    return None


def shown_texts(values):
    """The distinct display forms of ``values`` (None left out), as a frozenset."""
    return frozenset(display_text(v) for v in values if v is not None)


@functools.lru_cache(maxsize=16)
def distinct_width(texts, least, most):
    """The narrowest width from ``least`` to ``most`` at which middle cuts keep
    ``texts`` apart (``most`` if none does)."""
    longest = max((len(t) for t in texts), default=0)
    if longest <= least:
        return least
    for width in range(least, min(most, longest) + 1):
        if distinct_tail(texts, width) is not None:
            return width
    return min(most, longest)
