"""The report's charts, drawn by matplotlib into inline SVG (no files, no CDN, no JavaScript).

Each function returns an ``<svg>`` element as text, ready to paste into report.html, or None
when there is nothing to draw. matplotlib is imported lazily with the Agg backend (no display
needed); when it is not installed :func:`available` says why and the report goes without charts.
"""

from __future__ import annotations

import io
import math

from tlssniff.analysis.aggregate import ServerStats

MAX_SERVERS = 8  # the busiest servers get a line each; the rest are left out (said in a note)
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
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "matplotlib is not installed (pip install 'tlssniff[report]')"
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
    return label if len(label) <= n else label[: n - 1] + "…"


def rate_over_time(series: dict[str, list[tuple[float, bool]]], t0: float) -> str | None:
    """Resumption rate per time bin, one line per server. ``series``: label -> [(ts, resumed)]
    of classified handshakes."""
    points = [ts for s in series.values() for ts, _ in s]
    if not points:
        return None
    width = bin_width(max(points) - t0)
    binned: dict[str, dict[int, list[int]]] = {}
    for label, items in list(series.items())[:MAX_SERVERS]:
        bins = binned[label] = {}
        for ts, resumed in items:
            b = bins.setdefault(int((ts - t0) // width), [0, 0])
            b[0] += 1
            b[1] += resumed
    return rate_over_time_binned(binned, width)


def rate_over_time_binned(binned: dict[str, dict[int, list[int]]], width: float) -> str | None:
    """:func:`rate_over_time` from counts already binned: label -> bin -> [classified,
    resumed] (bins of ``width`` seconds from the first classified handshake), so that a caller
    streaming its verdicts keeps only the bins."""
    if not any(binned.values()):
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for i, (label, bins) in enumerate(list(binned.items())[:MAX_SERVERS]):
        xs = sorted(bins)
        ax.plot([(x + 0.5) * width for x in xs], [100 * bins[x][1] / bins[x][0] for x in xs],
                marker="o", markersize=4, linewidth=1.8, color=_COLORS[i % len(_COLORS)],
                label=_short(label))
    ax.set_ylim(-5, 105)
    ax.set_ylabel("resumed (% of classified)")
    ax.set_xlabel(f"seconds since the first handshake (bins of {_fmt_width(width)})")
    ax.set_title("Resumption rate over time per server")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _svg(fig)


def bin_width(span: float) -> float:
    """The bin width of :func:`rate_over_time` for handshakes spread over ``span`` seconds."""
    if span <= 0:
        return 1.0
    raw = span / 20
    nice = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
            14400, 21600, 43200, 86400]
    return next((n for n in nice if n >= raw), math.ceil(raw / 86400) * 86400)


def _fmt_width(w: float) -> str:
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


def mechanism_mix(rows: list[tuple[str, list[int]]]) -> str | None:
    """Stacked horizontal bars: how each server's handshakes ran."""
    rows = [r for r in rows if sum(r[1])][:MAX_SERVERS * 2]
    if not rows:
        return None
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
    return _svg(fig)


def session_ages(ages: dict[str, dict[str, list[float]]]) -> str | None:
    """Ages (issue to offer) of linked offers, accepted vs refused, per server."""
    rows = [(label, d["accepted"], d["refused"]) for label, d in ages.items()
            if d["accepted"] or d["refused"]][:MAX_SERVERS]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 0.7 * len(rows) + 1.6))
    for i, (_label, acc, ref) in enumerate(rows):
        y = len(rows) - 1 - i
        ax.scatter(acc, [y + 0.12] * len(acc), marker="o", s=46, color="#2ca02c",
                   label="accepted" if i == 0 else None, zorder=3)
        ax.scatter(ref, [y - 0.12] * len(ref), marker="X", s=56, color="#d62728",
                   label="refused" if i == 0 else None, zorder=3)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([_short(label) for label, _, _ in rows][::-1])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("session age when offered (seconds since the full handshake that issued it)")
    ax.set_title("Session age of offers: accepted vs refused")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    return _svg(fig)
