"""The live view: a curses table of zones -- sorted, filtered -- and a zone's histograms.

Screen (any size from 80x24 up; wider terminals get more columns, the whole
instance UUID and longer names; taller ones more rows)::

    title      engine, interval, time, zones, engine drops and errors
    status     sort column and order, filter, the last engine warning
    header     column titles
    rows       one per zone (the selected one highlighted)
    footer     keys (or the filter being typed)

Keys: a column's letter sorts by it (again: reverse); Up/Down/PgUp/PgDn/
Home/End select; Enter shows the selected zone's distributions as
dtrace-style histograms (power-of-two buckets, as quantize() prints them);
``/`` filters (any part of a name, UUID or id), Esc clears it; ``?`` help;
``q`` quits.  Ctrl-C quits too; curses restores the terminal either way.
"""

import curses
import os
import time

from smartos_telemetry.text_format import display_text, histogram_lines
from smartos_telemetry.top import heatmap as hm
from smartos_telemetry.top import heatmap_text as ht
from smartos_telemetry.top import model as m

ESC = 27
ENTER = (10, 13, curses.KEY_ENTER)
BACK = (ESC, curses.KEY_BACKSPACE, 127, 8, curses.KEY_LEFT, ord("b"))
ERASE = (curses.KEY_BACKSPACE, 127, 8)
NOTHING = object()  # no zone selected (the host row's id is None)
BLOCK_WIDTH = 76    # a histogram block; two side by side from 2 x this wide
HEAT_KEYS = (ord("h"), ord("H"))
#: the heatmap's shades in colour: 256-colour terminals, then 8-colour ones
RAMP_256 = (25, 38, 78, 220, 196)
RAMP_8 = (curses.COLOR_BLUE, curses.COLOR_CYAN, curses.COLOR_GREEN, curses.COLOR_YELLOW,
          curses.COLOR_RED)
STACKED = 40        # lines from which the host's heatmap shows below the zone's


class View:
    def __init__(self, scr, top, interval, sort, reverse=False, log=None, count=0,
                 clock=time.monotonic):
        self.scr = scr
        self.top = top
        self.columns = top.columns()
        self.keys = {c.key: c for c in self.columns}
        self.interval = interval
        self.sort, self.reverse = sort, reverse
        self.log = log
        self.count = count
        self.clock = clock
        self.frame = None
        self.frames = 0
        self.mode = "table"  # table | zone | heatmap | help
        self.heat_from = "table"  # where Esc goes back to from the heatmap
        self.meters = [n for n in hm.METER_LABELS if top.kinds.get(n) == "distribution"]
        self.meter = 0       # the heatmap's meter, an index into meters
        self.shades = None   # curses attributes per shade level, once colours are set up
        self.filter = ""
        self.prompt = None   # the filter being typed, or None
        self.before_prompt = ""
        self.selected = 0    # index into the shown rows
        self.selected_id = NOTHING
        self.first = 0       # first row on screen
        self.line = 0        # first line of the zone view

    # -- data ----------------------------------------------------------------------
    def rows(self):
        if self.frame is None:
            return []
        text = self.prompt if self.prompt is not None else self.filter
        rows = [r for r in self.frame.rows if not text or m.contains(r.zone, text)]
        return m.sorted_rows(self.frame, rows, self.sort, self.reverse)

    def _follow_selection(self, rows):
        """Keep the selection on the same zone across refreshes and re-sorts."""
        ids = [r.zone.id for r in rows]
        if self.selected_id in ids:
            self.selected = ids.index(self.selected_id)
        self.selected = max(0, min(self.selected, len(rows) - 1))
        self.selected_id = ids[self.selected] if rows else NOTHING

    # -- drawing -------------------------------------------------------------------
    def put(self, y, x, text, attr=0):
        h, w = self.scr.getmaxyx()
        if y >= h or x >= w:
            return
        try:  # the bottom-right cell cannot be written without scrolling
            self.scr.addstr(y, x, text[:w - x - (1 if y == h - 1 else 0)], attr)
        except curses.error:
            pass

    def draw(self):
        self.scr.erase()
        h, w = self.scr.getmaxyx()
        if h < 6 or w < 40:
            self.put(0, 0, "smartos-dtrace-top: terminal too small (40x6 at least)")
            self.scr.refresh()
            return
        self.put(0, 0, self.title().ljust(w), curses.A_REVERSE)
        if self.mode == "help":
            self.draw_help(h, w)
        elif self.mode == "zone":
            self.draw_zone(h, w)
        elif self.mode == "heatmap":
            self.draw_heatmap(h, w)
        else:
            self.draw_table(h, w)
        self.scr.refresh()

    def title(self):
        top = self.top
        text = f"smartos-dtrace-top {top.platform.name}/{top.engines.name} " \
               f"every {self.interval:g}s {time.strftime('%H:%M:%S')}"
        if self.frame is not None:
            h = self.frame.health
            text += f" zones {len(self.frame.rows)} drops {h.total_drops}" \
                    f" errors {h.total_errors}"
            if h.restarts:
                text += f" restarts {h.restarts}"
        return text

    def draw_table(self, h, w):
        rows = self.rows()
        self._follow_selection(rows)
        order = "ascending" if (self.sort.kind == "text") != self.reverse else "descending"
        status = f"sort: {self.sort.title} [{self.sort.key}] {order}"
        text = self.prompt if self.prompt is not None else self.filter
        if text:
            status += f"   filter: {text} ({len(rows)} of {len(self.frame.rows)})"
        if self.log is not None and self.log.last:
            status += f"   ! {self.log.last}"
        self.put(1, 0, status)
        layout = m.fit(self.columns, w, rows)  # names told apart among those shown
        self.put(2, 0, m.header_line(layout).ljust(w), curses.A_BOLD | curses.A_UNDERLINE)
        space = h - 4
        if self.frame is None:
            self.put(3, 0, f"collecting the first interval ({self.interval:g} s) ...")
        elif not rows:
            self.put(3, 0, "no zone matches the filter (Esc clears it)" if text else
                     "no zones")
        if self.selected < self.first:
            self.first = self.selected
        elif self.selected >= self.first + space:
            self.first = self.selected - space + 1
        self.first = max(0, min(self.first, max(0, len(rows) - space)))
        for i, row in enumerate(rows[self.first:self.first + space]):
            attr = curses.A_REVERSE if self.first + i == self.selected else 0
            self.put(3 + i, 0, m.row_line(self.frame, row, layout).ljust(w), attr)
        if self.prompt is not None:
            footer = f"filter: {self.prompt}_   (Enter: keep, Esc: cancel)"
        else:
            shown = {c.id for c, _ in layout}
            keys = " ".join(c.key for c in self.columns if c.id in shown)
            footer = f"q:quit ?:help Enter:zone h:heatmap /:filter sort:{keys}"
        self.put(h - 1, 0, footer)

    def zone_lines(self, row, width):
        """The zone view's body: every value, then each distribution as a histogram
        (two side by side in a terminal wide enough)."""
        frame = self.frame
        values = [f"{c.title} {m.cell(c, frame.value(row, c), 0).strip()}"
                  for c in self.columns
                  if c.kind != "text" and (c.stat is None or c.kind == "rate")]
        blocks = []
        for meter, kind in self.top.kinds.items():
            if kind != "distribution":
                continue
            stats = row.meters[meter]
            block = [f"{meter} (ns): {stats['count']} events in {frame.interval:.1f} s",
                     "  " + "  ".join(f"{s} {m.fmt_ns(stats[s])}"
                                      for s in ("p50", "p95", "p99", "max"))]
            hist = row.histograms.get(meter)
            if hist is not None and hist.counts:
                block.extend(histogram_lines(m.power_of_two(hist)))
            else:
                block.append("  no events in this interval")
            blocks.append(block + [""])
        lines = ["  ".join(values), ""]
        per_line = 2 if width >= 2 * BLOCK_WIDTH else 1
        for i in range(0, len(blocks), per_line):
            group = blocks[i:i + per_line]
            depth = max(len(b) for b in group)
            for j in range(depth):
                lines.append("".join((b[j] if j < len(b) else "").ljust(BLOCK_WIDTH)
                                     for b in group).rstrip())
        return lines

    def draw_zone(self, h, w):
        row = next((r for r in (self.frame.rows if self.frame else ())
                    if r.zone.id == self.selected_id), None)
        if row is None:
            self.put(1, 0, "the zone is gone (Esc: back)")
            return
        z = row.zone
        head = f"zone {display_text(z.name)}"
        more = f"id {z.id if z.id is not None else '-'}  kind {z.kind}  instance " \
               f"{display_text(z.instance_uuid) or '-'}  path {display_text(z.path) or '-'}"
        lines = self.zone_lines(row, w)
        if len(head) + 2 + len(more) <= w:
            head += "  " + more
        else:  # the whole name first, on a line of its own
            lines.insert(0, more)
        self.put(1, 0, head, curses.A_BOLD)
        space = h - 3
        self.line = max(0, min(self.line, len(lines) - space))
        for i, text in enumerate(lines[self.line:self.line + space]):
            self.put(2 + i, 0, text)
        more = f"  lines {self.line + 1}-{min(len(lines), self.line + space)} of {len(lines)}"
        self.put(h - 1, 0, "Esc/b:back h:heatmap Up/Down/PgUp/PgDn:scroll q:quit" + more)

    def draw_heatmap(self, h, w):
        """The selected zone's heatmap of one meter over the last intervals (and,
        in a tall terminal, the host's below it)."""
        row = next((r for r in self.rows() if r.zone.id == self.selected_id), None)
        if row is None:
            self.put(1, 0, "the zone is gone (Esc: back)")
            return
        meter = self.meters[self.meter]
        tabs = [(f" {i + 1}:{hm.METER_LABELS[name]} ", i == self.meter)
                for i, name in enumerate(self.meters)]
        x = 0
        for text, current in tabs:
            self.put(1, x, text, curses.A_REVERSE if current else 0)
            x += len(text)
        maps = [row.zone]
        host = next((r.zone for r in self.frame.rows if r.zone.id is None), None)
        if h >= STACKED and host is not None and row.zone.id is not None:
            maps.append(host)
        y, space = 2, h - 3
        for i, zone in enumerate(maps):
            height = space // len(maps) if i < len(maps) - 1 else space - (y - 2)
            y += self.draw_map(y, height, w, zone, meter)
        self.put(h - 1, 0, "Esc/b:back Tab/1-4:meter Up/Down:zone Enter:zone view q:quit")

    def draw_map(self, y, height, w, zone, meter):
        """One heatmap in ``height`` lines from line ``y``; the lines used."""
        shown = ht.map_width(w)
        heat = hm.build(self.top.history, zone, meter, shown, max(2, height - 5))
        latest = heat.columns[-1] if heat.columns else None
        head = f"zone {display_text(zone.name)}  {hm.METER_LABELS[meter]} latency"
        if latest is not None:
            now = f"  last interval: {latest.count} events, p50 {m.fmt_ns(latest.p50)}," \
                  f" p99 {m.fmt_ns(latest.p99)}"
            head += now if len(head) + len(now) <= w else ""
        self.put(y, 0, head, curses.A_BOLD)
        for i, runs in enumerate(ht.lines(heat, w)):
            x = 0
            for text, style in runs:
                self.put(y + 1 + i, x, text, self.style(style))
                x += len(text)
        return 1 + len(heat.rows) + 3

    def style(self, style):
        """The curses attribute of a heatmap run."""
        if style is None:
            return 0
        if self.shades is None:
            self.shades = self._shade_attrs()
        kind, level = style
        attr = self.shades[level]
        return attr | curses.A_BOLD | curses.A_REVERSE if kind != "shade" else attr

    @staticmethod
    def _shade_attrs():
        """Colour pairs for the shade levels where the terminal has colours."""
        attrs = [0] * (ht.LEVELS + 1)
        try:
            if not curses.has_colors():
                return attrs
            curses.start_color()
            try:
                curses.use_default_colors()
                background = -1
            except curses.error:
                background = curses.COLOR_BLACK
            ramp = RAMP_256 if curses.COLORS >= 256 else RAMP_8
            for level in range(1, ht.LEVELS + 1):
                curses.init_pair(level, ramp[level - 1], background)
                attrs[level] = curses.color_pair(level)
        except curses.error:
            pass
        return attrs

    def draw_help(self, h, w):
        lines = ["sort keys (again: reverse order):"]
        lines += [f"  {c.key}  {c.title:8} {c.help}" for c in self.columns]
        lines += ["", "  Up/Down/PgUp/PgDn/Home/End  select a zone",
                  "  Enter  the zone's distributions (histograms, this interval)",
                  "  h      the zone's latency heatmap (Tab or 1-4: meter, Up/Down: zone)",
                  "  /      filter zones (part of a name, UUID or id); Esc clears",
                  "  q      quit (Ctrl-C too)", "", "any key: back"]
        for i, text in enumerate(lines[:h - 2]):
            self.put(1 + i, 0, text)

    # -- keys --------------------------------------------------------------------------
    def on_key(self, ch):
        """Handle one key; False to quit."""
        if ch == -1 or ch == curses.KEY_RESIZE:
            return True
        if self.prompt is not None:
            self.on_prompt_key(ch)
            return True
        if ch in (ord("q"), ord("Q")):
            return False
        if self.mode == "help":
            self.mode = "table"
        elif self.mode == "zone":
            self.on_zone_key(ch)
        elif self.mode == "heatmap":
            self.on_heatmap_key(ch)
        else:
            self.on_table_key(ch)
        return True

    def on_prompt_key(self, ch):
        if ch in ENTER:
            self.filter, self.prompt = self.prompt.strip(), None
        elif ch == ESC:
            self.filter, self.prompt = self.before_prompt, None
        elif ch in ERASE:
            self.prompt = self.prompt[:-1]
        elif 32 <= ch < 127:
            self.prompt += chr(ch)
        self.selected, self.first = 0, 0

    def on_zone_key(self, ch):
        h, _ = self.scr.getmaxyx()
        moves = {curses.KEY_UP: -1, curses.KEY_DOWN: 1, curses.KEY_PPAGE: -(h - 4),
                 curses.KEY_NPAGE: h - 4, curses.KEY_HOME: -10**9, curses.KEY_END: 10**9}
        if ch in BACK:
            self.mode = "table"
        elif ch in HEAT_KEYS and self.meters:
            self.mode, self.heat_from = "heatmap", "zone"
        elif ch in moves:
            self.line = max(0, self.line + moves[ch])

    def on_heatmap_key(self, ch):
        digits = {ord(str(i + 1)): i for i in range(len(self.meters))}
        if ch in BACK or ch in HEAT_KEYS:
            self.mode = self.heat_from
        elif ch in ENTER:
            self.mode, self.line = "zone", 0
        elif ch in (9, ord("m")):  # Tab
            self.meter = (self.meter + 1) % len(self.meters)
        elif ch in (curses.KEY_BTAB, ord("M")):
            self.meter = (self.meter - 1) % len(self.meters)
        elif ch in digits:
            self.meter = digits[ch]
        elif ch in (curses.KEY_UP, curses.KEY_DOWN):
            rows = self.rows()
            self._follow_selection(rows)
            step = -1 if ch == curses.KEY_UP else 1
            self.selected = max(0, min(len(rows) - 1, self.selected + step))
            self.selected_id = rows[self.selected].zone.id if rows else NOTHING

    def on_table_key(self, ch):
        h, _ = self.scr.getmaxyx()
        moves = {curses.KEY_UP: -1, curses.KEY_DOWN: 1, curses.KEY_PPAGE: -(h - 4),
                 curses.KEY_NPAGE: h - 4, curses.KEY_HOME: -10**9, curses.KEY_END: 10**9}
        if ch in moves:
            self.selected = max(0, self.selected + moves[ch])
            self.selected_id = NOTHING
            rows = self.rows()
            self._follow_selection(rows)
        elif ch in ENTER:
            if self.rows():
                self.mode, self.line = "zone", 0
        elif ch == ord("/"):
            self.before_prompt, self.prompt = self.filter, self.filter
        elif ch == ESC:
            self.filter = ""
        elif ch in HEAT_KEYS:
            if self.rows() and self.meters:
                self.mode, self.heat_from = "heatmap", "table"
        elif ch == ord("?"):
            self.mode = "help"
        elif 0 <= ch < 256 and chr(ch) in self.keys:
            column = self.keys[chr(ch)]
            self.reverse = not self.reverse if column is self.sort else False
            self.sort = column

    # -- the loop --------------------------------------------------------------------
    def loop(self):
        try:
            curses.curs_set(0)
        except curses.error:
            pass
        try:
            return self._loop()
        finally:
            try:
                curses.curs_set(1)  # endwin leaves it as it was set
            except curses.error:
                pass

    def _loop(self):
        due = self.clock() + self.interval
        while True:
            if self.clock() >= due:
                self.frame = self.top.sample()
                self.frames += 1
                due += self.interval
                if due < self.clock():  # fell behind: start afresh
                    due = self.clock() + self.interval
            self.draw()
            if self.count and self.frames >= self.count:
                return 0
            self.scr.timeout(max(10, min(1000, int((due - self.clock()) * 1000))))
            if not self.on_key(self.scr.getch()):
                return 0


def run(top, interval, sort, reverse=False, log=None, count=0):
    """Show the live view until ``q`` or Ctrl-C (or ``count`` intervals); 0."""
    os.environ.setdefault("ESCDELAY", "25")  # Esc answers at once
    for stale in ("LINES", "COLUMNS"):  # ncurses would take them over the terminal's
        os.environ.pop(stale, None)     # size (use_env(False) means terminfo's 80x24)
    try:
        return curses.wrapper(lambda scr: View(scr, top, interval, sort, reverse, log,
                                               count).loop())
    except KeyboardInterrupt:
        return 0
