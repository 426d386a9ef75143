"""``smartos-dtrace-top``: a live per-zone view of the meters, for operators.

``model``: interval rows per zone from the engines, the zone layer and the
snapshot reducer; ``batch``: ``-b`` output (table or JSON lines);
``screen``: the interactive curses view.
"""
