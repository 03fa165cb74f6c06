"""The report's charts, drawn by matplotlib into inline SVG (no files, no CDN, no JavaScript).

Each function returns an ``<svg>`` element as text, ready to paste into report.html, or None
when there is nothing to draw. matplotlib is imported lazily with the Agg backend (no display
needed); when it is not installed :func:`available` says why and the report goes without charts.
"""

from __future__ import annotations

import io
import math

from tlssniff.analysis.aggregate import ServerStats
from tlssniff.output.display import for_label

MAX_SERVERS = 8  # the busiest servers get a line each; the rest are left out (said in a note)
MIN_PER_BIN = 5  # handshakes a time bin needs before its resumption rate is drawn
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf")
_MIX = (  # (label, colour): mechanism mix segments, in drawing order
    ("resumed: session id", "#2ca02c"),
    ("resumed: ticket", "#17becf"),
    ("resumed: TLS 1.3 PSK", "#1f77b4"),
    ("full: offer refused", "#d62728"),
    ("full: nothing offered", "#bbbbbb"),
    ("unknown", "#7f7f7f"),
)


def available() -> str | None:
    """None when charts can be drawn, else the reason (for the report's text)."""
    import importlib.util

    # Found, not imported: the import (0.3 s) happens where the charts are drawn.
    if importlib.util.find_spec("matplotlib") is None:
        return "matplotlib is missing (a dependency of tlssniff: pip install matplotlib)"
    return None


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "tlssniff", "font.size": 9, "axes.titlesize": 11})
    return plt


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE (inline in HTML)


def _short(label: str, n: int = 38) -> str:
    """A label as the chart shows it: a captured name (SNI) escaped, shortened, never mathtext
    (tlssniff.output.display.for_label)."""
    return for_label(label, n)


def _names(labels: list[str], n: int = 6) -> str:
    shown = ", ".join(labels[:n])
    return shown + (f" and {len(labels) - n} more" if len(labels) > n else "")


def rate_over_time(series: dict[str, list[tuple[float, bool]]], t0: float
                   ) -> tuple[str | None, list[str]]:
    """Resumption rate per time bin, one line per server. ``series``: label -> [(ts, resumed)]
    of classified handshakes, busiest first. (svg or None, notes): see
    :func:`rate_over_time_binned`, which this bins for."""
    points = [ts for s in series.values() for ts, _ in s]
    if not points:
        return None, ["Resumption over time: no classified handshake."]
    counts = {label: len(items) for label, items in series.items()}
    width = rate_bin_width(max(points) - t0, max(counts.values()))
    if width is None:
        return None, [too_few_note(max(counts.values()))]
    binned: dict[str, dict[int, list[int]]] = {}
    for label, items in series.items():
        bins = binned[label] = {}
        for ts, resumed in items:
            b = bins.setdefault(int((ts - t0) // width), [0, 0])
            b[0] += 1
            b[1] += resumed
    return rate_over_time_binned(binned, width, counts)


def rate_bin_width(span: float, busiest: int) -> float | None:
    """The bin width for handshakes spread over ``span`` seconds when the busiest server has
    ``busiest`` classified handshakes: wide enough for it to fill bins of
    :data:`MIN_PER_BIN`; None when it cannot fill three (no rate over time worth drawing)."""
    most_bins = busiest // MIN_PER_BIN
    if most_bins < 3:
        return None
    return _bin_width(span, min(20, most_bins))


def too_few_note(busiest: int) -> str:
    return (f"Resumption over time: not drawn, too few handshakes (the busiest server has "
            f"{busiest} classified handshakes; a rate over time needs at least "
            f"{3 * MIN_PER_BIN}: 3 time bins of {MIN_PER_BIN}). The per-server table gives "
            "the rates.")


def rate_over_time_binned(binned: dict[str, dict[int, list[int]] | None], width: float,
                          counts: dict[str, int]) -> tuple[str | None, list[str]]:
    """The chart from counts already binned (label -> bin -> [classified, resumed], busiest
    first; ``counts``: classified handshakes per label; None: too few to bin), so that a
    caller streaming its verdicts keeps only the bins. A bin holding fewer than :data:`MIN_PER_BIN` handshakes is
    not a rate worth a point (it is left as a gap); servers that end up with fewer than two
    points, and those beyond :data:`MAX_SERVERS`, are named in the notes."""
    drawn: list[tuple[str, list[float], list[float]]] = []
    thin: list[str] = []
    for label, bins in binned.items():
        if bins is None or sum(1 for b in bins.values() if b[0] >= MIN_PER_BIN) < 2:
            thin.append(f"{label} ({counts.get(label, 0)})")
            continue
        xs, ys = [], []
        for x in range(min(bins), max(bins) + 1):
            got = bins.get(x)
            xs.append((x + 0.5) * width)
            ys.append(100 * got[1] / got[0] if got and got[0] >= MIN_PER_BIN else math.nan)
        drawn.append((label, xs, ys))
    notes = []
    if not drawn:
        return None, [f"Resumption over time: not drawn, no server has {MIN_PER_BIN} "
                      f"classified handshakes in two bins of {_fmt_width(width)}."]
    left = drawn[MAX_SERVERS:]
    drawn = drawn[:MAX_SERVERS]
    notes.append(f"Each point is a bin of {_fmt_width(width)} holding at least {MIN_PER_BIN} "
                 "classified handshakes of its server; thinner bins are gaps.")
    if left:
        notes.append(f"Not drawn (only the {MAX_SERVERS} busiest servers get a line): "
                     + _names([label for label, _, _ in left]) + ".")
    if thin:
        notes.append(f"Not drawn (fewer than {MIN_PER_BIN} handshakes in two bins; classified "
                     "handshakes in brackets): " + _names(thin) + ".")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for i, (label, xs, ys) in enumerate(drawn):
        ax.plot(xs, ys, marker="o", markersize=4, linewidth=1.8,
                color=_COLORS[i % len(_COLORS)], label=_short(label))
    ax.set_ylim(-5, 105)
    ax.set_ylabel("resumed (% of classified)")
    ax.set_xlabel(f"seconds since the first handshake (bins of {_fmt_width(width)})")
    ax.set_title("Resumption rate over time per server")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _svg(fig), notes


def _bin_width(span: float, bins: int = 20) -> float:
    """A round bin width giving at most ``bins`` bins over ``span`` seconds."""
    if span <= 0:
        return 1.0
    raw = span / max(bins, 1)
    nice = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120,
            300, 600, 900, 1800, 3600, 7200,
            14400, 21600, 43200, 86400]
    return next((n for n in nice if n >= raw), math.ceil(raw / 86400) * 86400)


def _fmt_width(w: float) -> str:
    if w < 1:
        return f"{w * 1000:g} ms"
    if w < 60:
        return f"{w:g} s"
    if w < 3600:
        return f"{w / 60:g} min"
    return f"{w / 3600:g} h"


def mix_counts(s: ServerStats, refused: int) -> list[int]:
    """Counts in :data:`_MIX` order for one server."""
    h = s.by_handshake
    full = h.get("full", 0)
    return [h.get("session_id", 0), h.get("ticket", 0), h.get("psk", 0), refused,
            max(full - refused, 0), h.get("unknown", 0)]


def mechanism_mix(rows: list[tuple[str, list[int]]]) -> tuple[str | None, list[str]]:
    """Stacked horizontal bars: how each server's handshakes ran. (svg or None, notes)."""
    rows = [r for r in rows if sum(r[1])]
    if not rows:
        return None, ["Mechanism mix: no handshake."]
    notes = []
    if len(rows) > 2 * MAX_SERVERS:
        notes.append(f"Not drawn (only the {2 * MAX_SERVERS} busiest servers get a bar): "
                     + _names([label for label, _ in rows[2 * MAX_SERVERS:]]) + ".")
        rows = rows[:2 * MAX_SERVERS]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(rows) + 1.4))
    labels = [_short(label) for label, _ in rows][::-1]
    left = [0] * len(rows)
    for k, (name, color) in enumerate(_MIX):
        vals = [counts[k] for _, counts in rows][::-1]
        ax.barh(labels, vals, left=left, color=color, label=name, edgecolor="white")
        left = [a + b for a, b in zip(left, vals)]
    ax.set_xlabel("handshakes")
    ax.set_title("Mechanism mix per server")
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.25 if len(rows) < 4
              else -0.12), frameon=False)
    ax.grid(True, axis="x", alpha=0.3)
    return _svg(fig), notes


def session_ages(ages: dict[str, dict[str, list[float]]], refused: dict[str, int] | None = None
                 ) -> tuple[str | None, list[str]]:
    """Ages (issue to offer) of linked offers per server: accepted, refused, and offers of a
    session another node issued (marked apart: a cluster without shared session state).
    ``refused``: each server's refused offers in all, so the ones without an age (their
    session was issued before the capture, or in TLS 1.3, encrypted) are counted in a note.
    Returns (svg or None, notes)."""
    keys = ("accepted", "refused", "cross_accepted", "cross_refused", "refused_explained")
    rows: list[tuple] = [(label, *(d.get(k, []) for k in keys)) for label, d in ages.items()
                         if any(d.get(k) for k in keys)]
    # the servers that refused the most first: they are what the chart is for
    rows.sort(key=lambda r: -(len(r[2]) + len(r[4]) + len(r[5])))
    notes = []
    unplotted = []
    for label, n in (refused or {}).items():
        d = ages.get(label, {})
        missing = n - sum(len(d.get(k, [])) for k in ("refused", "cross_refused",
                                                       "refused_explained"))
        if missing > 0:
            unplotted.append(f"{label} ({missing})")
    if unplotted:
        notes.append("Refused offers without an age (their session was issued before the "
                     "capture, by an unseen server, or encrypted in TLS 1.3), not on the chart: "
                     + _names(unplotted) + ".")
    if not rows:
        return None, ["Session ages: no offer could be linked to the full handshake that "
                      "issued its session (TLS 1.3 tickets are issued encrypted), so there is "
                      "no age to chart."] + notes
    if len(rows) > MAX_SERVERS:
        notes.append(f"Not drawn (only {MAX_SERVERS} servers, those refusing most, get a row): "
                     + _names([r[0] for r in rows[MAX_SERVERS:]]) + ".")
        rows = rows[:MAX_SERVERS]
    if any(r[5] for r in rows):
        notes.append("Hollow crosses: refused offers another finding explains (the server "
                     "changed its ticket key, or the session was used by concurrent "
                     "connections), whatever their age.")
    if any(r[3] or r[4] for r in rows):
        notes.append("Triangles: offers of a session that another node (same name, another "
                     "address) issued; a refused one means the nodes do not share sessions or "
                     "ticket keys.")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 0.7 * len(rows) + 1.6))
    styles = (  # (list index, marker, size, colour, legend, y offset)
        (1, "o", 46, "#2ca02c", "accepted", 0.15),
        (2, "X", 56, "#d62728", "refused", 0.05),
        (3, "^", 50, "#17becf", "accepted, issued by another node", -0.05),
        (4, "v", 56, "#9467bd", "refused, issued by another node", -0.15),
        (5, "x", 46, "#ff7f0e", "refused, explained by another finding", 0.0),
    )
    seen: set[int] = set()
    for i, row in enumerate(rows):
        y = len(rows) - 1 - i
        for k, marker, size, color, name, dy in styles:
            xs = row[k]
            if not xs:
                continue
            ax.scatter(xs, [y + dy] * len(xs), marker=marker, s=size, color=color,
                       label=None if k in seen else name, zorder=3)
            seen.add(k)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([_short(r[0]) for r in rows][::-1])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("session age when offered (seconds since the full handshake that issued it)")
    ax.set_title("Session age of offers: accepted vs refused")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    return _svg(fig), notes
