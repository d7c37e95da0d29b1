"""An offline, single-file HTML report of a design comparison (``tagcache compare --json``).

:func:`write_html_report` takes the dict that ``compare --json`` writes and writes one HTML
file: the title, the note, a table of the designs and one of the rows, then four interactive
plotly plots, each in a div with a stable id:

    plot-hit-vs-share   effective hit ratio against tagged share, one line per design
    plot-latency-cdf    reservation-latency CDF per design at the highest share (log x)
    plot-recovered      memory recovered over time per design at the highest share
    plot-oracle-gap     pages the oracle restored beyond each design's, per 100 accesses

plotly.js is embedded once in the page, so the file needs no network. Every trace carries
``uid`` ``d<N>``, N the design's position in ``data["designs"]`` (keys not listed there follow),
so plotly names its SVG group ``trace... traced<N>`` and a reader (the tests) can tell which
design a drawn trace belongs to. A trace with no data is left out and its design named in the
plot's caption. The file is written under a temporary name and renamed when complete
(:mod:`tagcache.outputs`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from tagcache.outputs import check_output, open_output

PAGE_KIB = 4

PLOT_IDS = ("plot-hit-vs-share", "plot-latency-cdf", "plot-recovered", "plot-oracle-gap")

# One colour per design, the same in every plot (plotly's default qualitative sequence, then
# more of Tableau's, so a dozen designs stay distinct).
_COLOURS = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692",
            "#b6e880", "#ff97ff", "#fecb52", "#8c564b", "#7f7f7f")

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5em;
       color: #222; max-width: 1200px; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; }
h2 { font-size: 1.1em; margin-top: 1.8em; }
p.note { color: #555; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; }
th { background: #f2f2f2; text-align: left; }
td:first-child { white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.bad { color: #b00; font-weight: bold; }
p.caption { font-size: 0.9em; color: #444; margin: 0.2em 0; }
.plot { height: 440px; width: 100%; }
"""


def write_html_report(data: dict, path: Path) -> None:
    """Write the HTML report of ``data`` (the dict ``tagcache compare --json`` writes) to
    ``path``: built whole in memory, then written under a temporary name in the same folder
    and renamed, so ``path`` is either the old file or the complete new one. A folder that
    does not exist raises :class:`tagcache.outputs.OutputError` and writes nothing."""
    check_output(path, "HTML report")
    page = render_html_report(data).encode("utf-8")
    with open_output(path, "wb") as fh:
        fh.write(page)


def render_html_report(data: dict) -> str:
    """The page :func:`write_html_report` writes, as a string."""
    rep = _Report(data)
    plotlyjs = get_plotlyjs()
    if "</script" in plotlyjs.lower():        # would end the script element early
        raise RuntimeError("plotly.js contains '</script': cannot embed it")
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(rep.title)}</title>",
        f"<style>{_CSS}</style>",
        '<script>window.PlotlyConfig = {MathJaxConfig: "local"};</script>',
        f"<script>{plotlyjs}</script>",
        "</head>",
        "<body>",
        f"<h1>{e(rep.title)}</h1>",
        f'<p class="note">{e(rep.note)}</p>',
        "<h2>Designs</h2>",
        rep.designs_table(),
        "<h2>Results</h2>",
        rep.rows_table(),
    ]
    for heading, div_id, fig, captions in rep.figures():
        parts.append(f"<h2>{e(heading)}</h2>")
        parts.extend(f'<p class="caption">{e(c)}</p>' for c in captions)
        parts.append(_figure_div(fig, div_id))
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _figure_div(fig, div_id: str) -> str:
    return pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id,
                       default_height="440px",
                       config={"displaylogo": False, "responsive": True})


def _num(x: Any) -> float | None:
    """A finite float, or None (missing, null, NaN, infinite)."""
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _pct(x: Any, digits: int = 1) -> str:
    v = _num(x)
    return "–" if v is None else f"{v * 100:.{digits}f}"


def _share(x: Any) -> str:
    v = _num(x)
    return "–" if v is None else f"{v * 100:g}%"


def _int(x: Any) -> str:
    v = _num(x)
    return "–" if v is None else f"{round(v):,}"


def _mib(pages: Any) -> str:
    v = _num(pages)
    return "–" if v is None else f"{v * PAGE_KIB / 1024:,.1f}"


def _us(ns: Any) -> str:
    v = _num(ns)
    if v is None:
        return "–"
    us = v / 1000
    if us >= 100:
        return f"{us:,.0f}"
    if us >= 10:
        return f"{us:.1f}"
    return f"{us:.3f}"


def _pairs(xs: Iterable[Any], ys: Iterable[Any]) -> tuple[list[float], list[float]]:
    """Two series zipped, points with a missing or non-finite coordinate left out."""
    ox: list[float] = []
    oy: list[float] = []
    for x, y in zip(xs or (), ys or (), strict=False):
        fx, fy = _num(x), _num(y)
        if fx is not None and fy is not None:
            ox.append(fx)
            oy.append(fy)
    return ox, oy


class _Report:
    def __init__(self, data: dict) -> None:
        self.title = str(data.get("title") or "tagcache compare")
        self.note = str(data.get("note") or "")
        self.designs: list[dict] = [dict(d) for d in data.get("designs") or ()]
        self.index: dict[str, int] = {}
        for d in self.designs:
            self.index.setdefault(str(d.get("key")), len(self.index))
        rows = [dict(r) for r in data.get("rows") or ()]
        for r in rows:                          # a row of a design not listed: shown by key
            key = str(r.get("key"))
            if key not in self.index:
                self.index[key] = len(self.index)
                self.designs.append({"key": key, "label": key, "properties": {}})
        for i, r in enumerate(rows):
            r["_order"] = (self.index[str(r.get("key"))], _num(r.get("tagged_share")) or 0.0, i)
        self.rows = sorted(rows, key=lambda r: r["_order"])
        shares = [s for s in (_num(r.get("tagged_share")) for r in self.rows) if s is not None]
        self.top_share = max(shares) if shares else None

    # -- helpers ---------------------------------------------------------------------------

    def label(self, key: str) -> str:
        d = self.designs[self.index[key]]
        return str(d.get("label") or key)

    def trace_style(self, key: str, line: bool = True) -> dict:
        """Name, uid and colour of ``key``'s trace (text escaped: plotly reads tags in it)."""
        i = self.index[key]
        colour = _COLOURS[i % len(_COLOURS)]
        style = {"name": html.escape(self.label(key)), "uid": f"d{i}", "legendgroup": f"d{i}",
                 "marker": {"color": colour}}
        if line:
            style["line"] = {"color": colour}
        return style

    def keys(self) -> list[str]:
        return [str(d.get("key")) for d in self.designs]

    def at_top_share(self) -> dict[str, dict]:
        """Each design's row at the highest share (the first, if one is listed twice)."""
        out: dict[str, dict] = {}
        for r in self.rows:
            if self.top_share is not None and _num(r.get("tagged_share")) == self.top_share:
                out.setdefault(str(r.get("key")), r)
        return out

    # -- tables ----------------------------------------------------------------------------

    def designs_table(self) -> str:
        e = html.escape
        props = sorted({p for d in self.designs for p in (d.get("properties") or {})})
        head = "".join(f"<th>{e(h)}</th>" for h in
                       ["design", "key", "kind", *(p.replace("_", " ") for p in props)])
        body = []
        for d in self.designs:
            pr = d.get("properties") or {}
            cells = [e(str(d.get("label") or d.get("key"))), f"<code>{e(str(d.get('key')))}</code>",
                     e(str(d.get("design") or ""))]
            cells += [e("–" if pr.get(p) is None else ("yes" if pr[p] is True else
                                                       "no" if pr[p] is False else str(pr[p])))
                      for p in props]
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"

    def rows_table(self) -> str:
        e = html.escape
        cols = ["design", "tagged share", "effective hit %", "pages read", "restored",
                "recovered avg MiB", "fallbacks", "failures", "migrations",
                "latency p50 µs", "latency p99 µs", "latency max µs", "violations"]
        head = "".join(f"<th>{e(c)}</th>" for c in cols)
        body = []
        for r in self.rows:
            lat = r.get("latency_ns") or {}
            cells = [
                ("", e(self.label(str(r.get("key"))))),
                ("num", e(_share(r.get("tagged_share")))),
                ("num", e(_pct(r.get("effective_hit_ratio")))),
                ("num", e(_int(r.get("pages_read")))),
                ("num", e(_int(r.get("restored")))),
                ("num", e(_mib(r.get("recovered_avg_pages")))),
                ("num", e(_int(r.get("fallbacks")))),
                ("num", e(_int(r.get("failures")))),
                ("num", e(_int(r.get("migrations")))),
                ("num", e(_us(lat.get("p50")))),
                ("num", e(_us(lat.get("p99")))),
                ("num", e(_us(lat.get("max")))),
                ("num bad" if (_num(r.get("violations")) or 0) > 0 else "num",
                 e(_int(r.get("violations")))),
            ]
            body.append("<tr>" + "".join(
                f'<td class="{c}">{v}</td>' if c else f"<td>{v}</td>" for c, v in cells)
                + "</tr>")
        if not body:
            body.append(f'<tr><td colspan="{len(cols)}">no rows</td></tr>')
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"

    # -- figures ---------------------------------------------------------------------------

    def figures(self) -> list[tuple[str, str, Any, list[str]]]:
        return [self.fig_hit_vs_share(), self.fig_latency_cdf(), self.fig_recovered(),
                self.fig_oracle_gap()]

    def _layout(self, fig, x: dict, y: dict, **kw) -> None:
        fig.update_layout(template="plotly_white", height=440,
                          margin={"l": 60, "r": 20, "t": 20, "b": 50},
                          legend={"title": {"text": "design"}}, hovermode="closest", **kw)
        fig.update_xaxes(**x)
        fig.update_yaxes(**y)

    def _omitted(self, what: str, keys: list[str]) -> list[str]:
        if not keys:
            return []
        names = ", ".join(self.label(k) for k in keys)
        return [f"Left out ({what}): {names}."]

    def _top_share_text(self) -> str:
        return "no share" if self.top_share is None else f"{self.top_share * 100:g}% tagged"

    def _missing_at_top(self) -> list[str]:
        top = self.at_top_share()
        return [k for k in self.keys() if k not in top]

    def fig_hit_vs_share(self):
        fig = go.Figure()
        empty = []
        for key in self.keys():
            rows = [r for r in self.rows if str(r.get("key")) == key]
            xs, ys = _pairs((_num(r.get("tagged_share")) for r in rows),
                            (_num(r.get("effective_hit_ratio")) for r in rows))
            if not xs:
                empty.append(key)
                continue
            fig.add_trace(go.Scatter(
                x=[x * 100 for x in xs], y=[y * 100 for y in ys], mode="lines+markers",
                hovertemplate="%{fullData.name}<br>share %{x:g}%<br>"
                              "effective hit %{y:.1f}%<extra></extra>",
                **self.trace_style(key)))
        self._layout(fig, {"title": {"text": "tagged share of memory (%)"}, "ticksuffix": "%"},
                     {"title": {"text": "effective hit ratio (%)"}, "ticksuffix": "%",
                      "rangemode": "tozero"})
        captions = ["Effective cleancache hit ratio of each design as the share of memory "
                    "mapped tagged grows."]
        captions += self._omitted("no effective hit ratio", empty)
        return "Effective hit ratio against tagged share", PLOT_IDS[0], fig, captions

    def fig_latency_cdf(self):
        fig = go.Figure()
        empty, zero_dropped = [], False
        top = self.at_top_share()
        for key in self.keys():
            if key not in top:
                continue
            cdf = top[key].get("latency_cdf") or {}
            xs, ys = _pairs(cdf.get("ns"), cdf.get("fraction"))
            pos = [(x, y) for x, y in zip(xs, ys, strict=True) if x > 0]
            zero_dropped |= len(pos) < len(xs)
            if not pos:
                empty.append(key)
                continue
            fig.add_trace(go.Scatter(
                x=[p[0] for p in pos], y=[p[1] for p in pos], mode="lines", line_shape="hv",
                hovertemplate="%{fullData.name}<br>%{x:,.0f} ns<br>"
                              "fraction %{y:.3f}<extra></extra>",
                **self.trace_style(key)))
        self._layout(fig, {"title": {"text": "reservation latency (ns, log scale)"},
                           "type": "log"},
                     {"title": {"text": "fraction of reservations ≤ latency"},
                      "range": [0, 1.02]})
        captions = ["Cumulative distribution of modelled tag-storage reservation latency per "
                    f"design, at the highest tagged share ({self._top_share_text()})."]
        captions += self._omitted("empty latency CDF", empty)
        captions += self._omitted("no row at this share", self._missing_at_top())
        if zero_dropped:
            captions.append("Latencies of 0 ns cannot be drawn on a log scale: each curve "
                            "starts at its first non-zero latency, at the fraction already "
                            "reached.")
        return "Reservation latency CDF", PLOT_IDS[1], fig, captions

    def fig_recovered(self):
        fig = go.Figure()
        empty = []
        top = self.at_top_share()
        for key in self.keys():
            if key not in top:
                continue
            ser = top[key].get("recovered_series") or {}
            xs, ys = _pairs(ser.get("event"), ser.get("pages"))
            if not xs:
                empty.append(key)
                continue
            fig.add_trace(go.Scatter(
                x=xs, y=[y * PAGE_KIB / 1024 for y in ys], mode="lines",
                hovertemplate="%{fullData.name}<br>event %{x:,}<br>"
                              "%{y:,.1f} MiB<extra></extra>",
                **self.trace_style(key)))
        self._layout(fig, {"title": {"text": "event"}},
                     {"title": {"text": "memory recovered (MiB)"}, "rangemode": "tozero"})
        captions = ["Tag-storage memory doing useful work (MiB, 4 KiB pages) as the replay "
                    f"goes on, per design, at the highest tagged share ({self._top_share_text()})."]
        captions += self._omitted("empty series", empty)
        captions += self._omitted("no row at this share", self._missing_at_top())
        return "Memory recovered over time", PLOT_IDS[2], fig, captions

    def fig_oracle_gap(self):
        fig = go.Figure()
        shares = sorted({s for s in (_num(r.get("tagged_share")) for r in self.rows)
                         if s is not None})
        none = []
        for key in self.keys():
            rows = [r for r in self.rows if str(r.get("key")) == key]
            xs, ys = _pairs((_num(r.get("tagged_share")) for r in rows),
                            (_num(r.get("oracle_gap")) for r in rows))
            if not xs:
                none.append(key)
                continue
            fig.add_trace(go.Bar(
                x=[f"{x * 100:g}%" for x in xs], y=[y * 100 for y in ys],
                hovertemplate="%{fullData.name}<br>share %{x}<br>"
                              "oracle gap %{y:.2f} per 100 accesses<extra></extra>",
                **self.trace_style(key, line=False)))
        self._layout(fig, {"title": {"text": "tagged share of memory"}, "type": "category",
                           "categoryorder": "array",
                           "categoryarray": [f"{s * 100:g}%" for s in shares]},
                     {"title": {"text": "oracle gap (restores per 100 accesses)"}},
                     barmode="group")
        captions = ["How many more pages per 100 accesses the oracle (Belady on the same "
                    "free tag pages) restored than each design, at the same tagged share."]
        captions += self._omitted("no oracle gap: the oracle itself, or no cache", none)
        return "Gap to the oracle", PLOT_IDS[3], fig, captions
