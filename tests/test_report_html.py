"""The HTML report: offline, written atomically, every plot drawn by a real browser.

The browser check opens the written file in headless Chromium (Debian's, installed by the
module fixture if missing), with name resolution disabled so nothing can come from the
network, and reads back the DOM after the page's scripts ran (--dump-dom). In each plot div
it looks for plotly's SVG and, for each design that has data for that plot, a drawn trace
with geometry: a line path with at least one segment, or marker / bar paths.
"""

from __future__ import annotations

import ctypes
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tagcache.outputs import OutputError
from tagcache.report_html import PLOT_IDS, render_html_report, write_html_report

CHROMIUM = "/usr/bin/chromium"
BROWSER_TIMEOUT_S = 60

# ---------------------------------------------------------------------------------------------
# The input: what `tagcache compare --json` writes, by hand.

DESIGNS = [
    ("oracle", "oracle", "oracle (knows the future)"),
    ("cleancache/whole/fifo", "cleancache", "cleancache, whole folio, FIFO"),
    ("cleancache/split/lru", "cleancache", "cleancache, split folio, LRU"),
    ("cma", "cma", "CMA <lend & migrate>"),
    ("none", "none", "no reuse"),
]
SHARES = (0.01, 0.05, 0.2)


def _row(key: str, share: float, k: int) -> dict:
    n_cdf, n_series = 200, 300
    has_cache = key != "none"
    cdf = {"ns": [20.0 * 1.04 ** i for i in range(n_cdf)],
           "fraction": [(i + 1) / n_cdf for i in range(n_cdf)]}
    series = {"event": [i * 1000 for i in range(n_series)],
              "pages": [(2000 - 4000 * share) * (1 + 0.1 * math.sin(i / 20 + k))
                        for i in range(n_series)]}
    ehr = 0.62 - 0.5 * share - 0.04 * k if has_cache else 0.0
    return {
        "key": key, "tagged_share": share,
        "effective_hit_ratio": ehr, "hit_ratio": ehr * 0.9,
        "pages_read": 100_000 + 1000 * k, "restored": 678 * (k + 1) if has_cache else 0,
        "recovered_avg_pages": 1234.5 if has_cache else 0.0,
        "fallbacks": 0, "failures": 3 if key == "cma" else 0,
        "migrations": 250 if key == "cma" else 0, "violations": 0,
        "latency_ns": {"p50": 20.0, "p99": 1500.0, "max": 9000.0},
        "latency_cdf": cdf if has_cache else {"ns": [], "fraction": []},
        "recovered_series": series if has_cache else {"event": [], "pages": []},
        "oracle_gap": None if key in ("oracle", "none") else 0.02 + 0.01 * k + share / 10,
    }


def make_data() -> dict:
    return {
        "title": "tagcache compare: default <script>alert(1)</script>",
        "note": "dev-sample-grep, 3 passes, 16 MiB cgroup & 5 designs",
        "designs": [{"key": key, "design": d, "label": label,
                     "properties": {"may_sleep": key == "cma", "can_fail": key == "cma",
                                    "persistent": False}}
                    for key, d, label in DESIGNS],
        "rows": [_row(key, share, k) for share in SHARES for k, (key, _, _) in enumerate(DESIGNS)],
    }


@pytest.fixture
def data() -> dict:
    return make_data()


def expected_traces(data: dict) -> dict[str, list[str]]:
    """Per plot, the uids (d<position in designs>) of the designs that have data for it, in
    design order: what the browser must show drawn. Worked out from the input alone."""
    uid = {d["key"]: f"d{i}" for i, d in enumerate(data["designs"])}
    rows = data["rows"]
    top = max(r["tagged_share"] for r in rows)
    at_top = {r["key"]: r for r in rows if r["tagged_share"] == top}

    def where(pred) -> list[str]:
        return [uid[d["key"]] for d in data["designs"] if pred(d["key"])]

    return {
        "plot-hit-vs-share": where(lambda k: any(
            r["key"] == k and r["effective_hit_ratio"] is not None for r in rows)),
        "plot-latency-cdf": where(lambda k: k in at_top and any(
            x > 0 for x in at_top[k]["latency_cdf"]["ns"])),
        "plot-recovered": where(lambda k: k in at_top and
                                len(at_top[k]["recovered_series"]["event"]) > 0),
        "plot-oracle-gap": where(lambda k: any(
            r["key"] == k and r["oracle_gap"] is not None for r in rows)),
    }


# ---------------------------------------------------------------------------------------------
# Reading HTML back.

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
         "source", "track", "wbr"}


class _Node:
    __slots__ = ("tag", "attrs", "children")

    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag = tag
        self.attrs = attrs
        self.children: list[_Node] = []

    def classes(self) -> list[str]:
        return self.attrs.get("class", "").split()

    def walk(self) -> Iterator[_Node]:
        stack = [self]
        while stack:
            n = stack.pop()
            yield n
            stack.extend(reversed(n.children))


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = _Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = _Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(_Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):     # close up to the matching element
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return


def parse(text: str) -> _Node:
    b = _TreeBuilder()
    b.feed(text)
    b.close()
    return b.root


_SEGMENT = re.compile(r"[LHVCSQTAlhvcsqta]")


def _has_geometry(trace: _Node) -> bool:
    """Does a plotly trace group draw anything: a line path with a segment, or a marker or
    bar path (under g.points)?"""
    for n in trace.walk():
        if n.tag == "path":
            d = n.attrs.get("d", "").strip()
            if "js-line" in n.classes() and _SEGMENT.search(d):
                return True
    for n in trace.walk():
        if n.tag == "g" and "points" in n.classes():
            if any(m.tag == "path" and m.attrs.get("d", "").strip() for m in n.walk()):
                return True
    return False


def drawn_traces(dom: str) -> dict[str, tuple[bool, list[tuple[str, bool]]]]:
    """Per plot div: (has plotly's SVG, [(uid, has geometry) for each trace group]). The uid
    comes from the group's class ``trace<uid>`` (scatter); a trace type that does not put it
    there (bars) gets the position ``#k`` among the plot's traces."""
    out: dict[str, tuple[bool, list[tuple[str, bool]]]] = {}
    for div in parse(dom).walk():
        pid = div.attrs.get("id")
        if div.tag != "div" or pid not in PLOT_IDS:
            continue
        svg = any("main-svg" in n.classes() for n in div.walk())
        traces = []
        for n in div.walk():
            cls = n.classes()
            if n.tag == "g" and "trace" in cls:
                uid = next((c[5:] for c in cls if c.startswith("trace") and len(c) > 5
                            and re.fullmatch(r"d\d+", c[5:])), f"#{len(traces)}")
                traces.append((uid, _has_geometry(n)))
        out[pid] = (svg, traces)
    return out


def check_plots(dom: str, expected: dict[str, list[str]]) -> list[str]:
    """Problems found in the rendered DOM, [] when every plot rendered with all its data:
    each plot div exists, holds plotly's SVG, and draws, for each expected uid, a trace with
    geometry (traces without a uid in their class are matched by position). An empty plot,
    a plot missing a trace, or a trace drawn without geometry is reported."""
    drawn = drawn_traces(dom)
    problems = []
    for pid, uids in expected.items():
        if pid not in drawn:
            problems.append(f"{pid}: no such div")
            continue
        svg, traces = drawn[pid]
        if not svg:
            problems.append(f"{pid}: no plotly SVG (.main-svg)")
            continue
        named = {u: ok for u, ok in traces if not u.startswith("#")}
        by_pos = [ok for u, ok in traces if u.startswith("#")]
        for k, u in enumerate(uids):
            ok = named.get(u, by_pos[k] if k < len(by_pos) and not named else None)
            if ok is None:
                problems.append(f"{pid}: missing trace {u}")
            elif not ok:
                problems.append(f"{pid}: trace {u} drawn empty")
        if len(traces) > len(uids):
            problems.append(f"{pid}: {len(traces)} traces drawn, {len(uids)} expected")
    return problems


# ---------------------------------------------------------------------------------------------
# Chromium: installed once if missing, run with a timeout, and nothing of it left running.

def _apt(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(["apt-get", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium; installed with apt-get when missing and we are root; else skip."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"{CHROMIUM} is missing and we cannot install it (not root with apt-get)")
    try:
        r = _apt("install", "-y", "--no-install-recommends", "chromium", timeout=1200)
        if r.returncode != 0:                    # package lists missing or stale
            _apt("update", timeout=600)
            r = _apt("install", "-y", "--no-install-recommends", "chromium", timeout=1200)
    except subprocess.TimeoutExpired as e:
        pytest.skip(f"apt-get install chromium timed out after {e.timeout:.0f} s")
    if r.returncode != 0 or not os.access(CHROMIUM, os.X_OK):
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        pytest.skip(f"apt-get install chromium failed: {tail[0]}")
    return CHROMIUM


_PR_SET_CHILD_SUBREAPER, _PR_GET_CHILD_SUBREAPER = 36, 37


def _proc_stats() -> Iterator[tuple[int, str]]:
    """(pid, /proc/PID/stat) of every process still there when read."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            yield int(entry), Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue


def _children(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    return {p for p, stat in _proc_stats()
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid}


def _chromium_pids() -> set[int]:
    """Processes, live or zombie, named chromium or chrome_* (from /proc/PID/stat)."""
    return {p for p, stat in _proc_stats()
            if re.search(r"\((chromium|chrome)", stat[:stat.rindex(")") + 1])}


def dump_doms(chromium: str, pages: list[Path], work: Path) -> list[str]:
    """Each page's DOM after its scripts ran, from headless Chromium runs side by side.

    Each browser runs in its own session (killed as a group when done or after
    BROWSER_TIMEOUT_S); for the span of the runs this process is a child subreaper, so the
    helpers Chromium detaches (crashpad starts its own session) come back to us when their
    parent exits, and are killed and reaped here too: nothing outlives this call, not even
    a zombie."""
    libc = ctypes.CDLL(None, use_errno=True)
    was = ctypes.c_int(0)
    libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(was), 0, 0, 0)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    me = os.getpid()
    before = _children(me)
    env = dict(os.environ, HOME=str(work), XDG_CONFIG_HOME=str(work / "config"),
               XDG_CACHE_HOME=str(work / "cache"))
    procs, outs = [], []
    try:
        for i, page in enumerate(pages):
            out = work / f"dom{i}.html"
            outs.append(out)
            cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                   "--no-first-run", "--disable-background-networking",
                   "--disable-component-update", "--disable-sync", "--disable-crash-reporter",
                   "--host-resolver-rules=MAP * ~NOTFOUND",     # no network: nothing resolves
                   f"--user-data-dir={work / f'profile{i}'}",
                   "--virtual-time-budget=15000", "--dump-dom", page.resolve().as_uri()]
            with open(out, "wb") as fh:
                procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fh,
                                              stderr=subprocess.DEVNULL, env=env,
                                              start_new_session=True))
        deadline = time.monotonic() + BROWSER_TIMEOUT_S
        hung = []
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                hung.append(p.pid)
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)     # its zygote and renderers, if any are left
            except ProcessLookupError:
                pass
            p.wait()
        end = time.monotonic() + 5
        while time.monotonic() < end:                # orphans handed to us: kill and reap
            strays = _children(me) - before
            if not strays:
                break
            for pid in strays:
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, os.WNOHANG)
                except (ProcessLookupError, ChildProcessError):
                    pass
            time.sleep(0.02)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, was.value, 0, 0, 0)
    assert not hung, f"chromium hung for {BROWSER_TIMEOUT_S} s and was killed"
    return [o.read_text(encoding="utf-8", errors="replace") for o in outs]


@pytest.fixture(scope="module")
def rendered(chromium):
    """Two reports rendered by Chromium: the full one, and one where a design's latency CDF
    and recovered series at the highest share are empty."""
    work = Path(tempfile.mkdtemp(prefix="tagcache-html-test-"))
    try:
        full = make_data()
        broken = make_data()
        for r in broken["rows"]:
            if r["key"] == "cleancache/whole/fifo" and r["tagged_share"] == max(SHARES):
                r["latency_cdf"] = {"ns": [], "fraction": []}
                r["recovered_series"] = {"event": [], "pages": []}
        pages = [work / "full.html", work / "broken.html"]
        write_html_report(full, pages[0])
        write_html_report(broken, pages[1])
        before = _chromium_pids()
        t0 = time.monotonic()
        doms = dump_doms(chromium, pages, work)
        yield {"full": (full, doms[0]), "broken": (broken, doms[1]),
               "seconds": time.monotonic() - t0, "chromium_before": before}
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Tests.

def _tags(text: str, names: set[str]) -> Iterator[_Node]:
    return (n for n in parse(text).walk() if n.tag in names)


def test_page_is_offline_with_plotly_embedded_once(data, tmp_path):
    out = tmp_path / "report.html"
    write_html_report(data, out)
    text = out.read_text(encoding="utf-8")
    refs = [(n.tag, a, v) for n in _tags(text, {"script", "link", "img", "iframe", "source"})
            for a, v in n.attrs.items() if a in ("src", "href")]
    remote = [r for r in refs if re.match(r"\s*(https?:)?//", r[2], re.I)]
    assert remote == []
    scripts = [n for n in _tags(text, {"script"}) if "src" not in n.attrs]
    assert text.count("plotly.js v") >= 1
    big = [b for b in re.findall(r"<script>(.*?)</script>", text, re.S) if len(b) > 1_000_000]
    assert len(big) == 1, "plotly.js must be embedded exactly once"
    assert len(scripts) == 2 + len(PLOT_IDS)      # config, plotly.js, one per plot
    for pid in PLOT_IDS:
        assert text.count(f'id="{pid}"') == 1


def test_text_is_escaped_and_table_has_every_row(data, tmp_path):
    out = tmp_path / "report.html"
    write_html_report(data, out)
    text = out.read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "CMA &lt;lend &amp; migrate&gt;" in text
    assert "CMA <lend" not in text
    tables = [n for n in parse(text).walk() if n.tag == "table"]
    body_rows = [n for n in tables[-1].walk() if n.tag == "tr"][1:]
    assert len(body_rows) == len(data["rows"])
    assert "1.500" in text and "9.000" in text        # p99 1500 ns, max 9000 ns, in µs
    assert render_html_report(data).count("<table>") == 2


def test_missing_folder_raises_one_clear_error_and_writes_nothing(data, tmp_path):
    target = tmp_path / "no-such-folder" / "report.html"
    with pytest.raises(OutputError, match="does not exist"):
        write_html_report(data, target)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_replaced_only_when_new_one_is_complete(data, tmp_path, monkeypatch):
    target = tmp_path / "report.html"
    target.write_text("old report")
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((Path(src).parent == tmp_path,
                     Path(src).read_text(encoding="utf-8").rstrip().endswith("</html>"),
                     target.read_text()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_html_report(data, target)
    assert seen == [(True, True, "old report")]   # same folder, complete, old file untouched
    assert target.read_text(encoding="utf-8").rstrip().endswith("</html>")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]

    # A failure before the rename leaves the old file as it was and no temporary file.
    target.write_text("old report")

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space"):
        write_html_report(data, target)
    assert target.read_text() == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_every_plot_renders_with_data_in_chromium(rendered):
    data, dom = rendered["full"]
    expected = expected_traces(data)
    assert all(expected[pid] for pid in PLOT_IDS)          # the check is not vacuous
    assert "d4" not in expected["plot-latency-cdf"]          # "none": empty CDF, left out
    assert check_plots(dom, expected) == []
    assert rendered["seconds"] < 20


def test_check_notices_a_series_missing_from_the_page(rendered):
    """A report that lost a design's series: the check must say which."""
    full, _ = rendered["full"]
    broken, dom = rendered["broken"]
    assert check_plots(dom, expected_traces(broken)) == []   # left out, as the data says
    problems = check_plots(dom, expected_traces(full))
    assert problems == ["plot-latency-cdf: missing trace d1", "plot-recovered: missing trace d1"]
    assert "Left out (empty latency CDF): cleancache, whole folio, FIFO, no reuse." in dom


def test_check_notices_empty_traces_and_missing_svg():
    """The DOM helper on shapes plotly produces: a line of one point draws no segment, a
    plot whose script never ran has no SVG."""
    dom = ('<div id="plot-hit-vs-share"><svg class="main-svg"><g class="trace scatter traced0">'
           '<g class="lines"><path class="js-line" d="M32.45,136.8"></path></g>'
           '<g class="points"></g></g><g class="trace scatter traced1"><g class="lines">'
           '<path class="js-line" d="M0,1L2,3"></path></g></g></svg></div>'
           '<div id="plot-oracle-gap"><svg class="main-svg"><g class="trace bars">'
           '<g class="points"><g class="point"><path d="M1,2V3H4V5Z"></path></g></g></g></svg>'
           '</div><div id="plot-recovered"></div>')
    expected = {"plot-hit-vs-share": ["d0", "d1"], "plot-oracle-gap": ["d1", "d2"],
                "plot-recovered": ["d0"], "plot-latency-cdf": ["d0"]}
    assert check_plots(dom, expected) == [
        "plot-hit-vs-share: trace d0 drawn empty",
        "plot-oracle-gap: missing trace d2",
        "plot-recovered: no plotly SVG (.main-svg)",
        "plot-latency-cdf: no such div",
    ]


def test_no_chromium_process_survives(rendered):
    """Not one process of the runs is left, live or zombie (a zombie handed to an init that
    does not reap would stay for good)."""
    assert _chromium_pids() - rendered["chromium_before"] == set()
