"""Real traces through the full model (issue 3, part 5): `tagcache run --trace`.

Tagged memory either comes from the scenario's generator, merged into the trace, or from the
trace's own kmem events: the user anonymous pages of the chosen tasks, at their real PFNs.
"""

from __future__ import annotations

import json
from pathlib import Path

from tagcache.cli import main
from tagcache.replay import CLEANCACHE_DEPENDENT

ROOT = Path(__file__).resolve().parents[2]
MINI = ROOT / "tests" / "data" / "captures" / "mini-grep.trace.zst"

HEADER = "# tracer: nop\n#\n"
LINE = "{comm}-{pid} [000] ..... {t:.6f}: {event}\n"


def kmem_trace(tmp_path: Path) -> Path:
    """A hand-made capture: task 'app' faults in 64 user pages at PFNs 0x40000.., task
    'other' 32 at 0x50000.., one page-cache allocation (not zeroed) at 0x60000, then 'app'
    frees its first 32 pages; plus a small file read so there is page-cache work."""
    lines, t = [HEADER], 1.0

    def add(comm: str, pid: int, event: str) -> None:
        nonlocal t
        lines.append(LINE.format(comm=comm, pid=pid, t=t, event=event))
        t += 0.001

    for i in range(64):
        add("app", 100, f"mm_page_alloc: page=0000000000000001 pfn=0x{0x40000 + i:x} order=0 "
                        "migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO")
    for i in range(32):
        add("other", 200, f"mm_page_alloc: page=0000000000000001 pfn=0x{0x50000 + i:x} "
                          "order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO")
    add("app", 100, "mm_page_alloc: page=0000000000000001 pfn=0x60000 order=0 migratetype=1 "
                    "gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_NOWARN|__GFP_NORETRY")
    for i in range(8):
        add("app", 100, f"mm_filemap_add_to_page_cache: dev 254:0 ino 10 pfn=0x{0x70000 + i:x} "
                        f"ofs={i * 4096} order=0")
    add("app", 100, "mm_filemap_get_pages: dev=254:0 ino=10 ofs=0-32767")
    for i in range(32):
        add("app", 100, f"mm_page_free: page=0000000000000001 pfn=0x{0x40000 + i:x} order=0")
    p = tmp_path / "kmem.trace"
    p.write_text("".join(lines))
    return p


def run_json(args: list[str], capsys) -> dict:
    assert main(["run", "--no-progress", "--json", "-", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_tagged_memory_from_captured_kmem_events(tmp_path, capsys):
    out = run_json(["--trace", str(kmem_trace(tmp_path)), "--tagged", "trace",
                    "--tag-comm", "app", "--capacity", "64"], capsys)
    assert [r["backend"] for r in out["results"]] == ["idle", "cleancache", "cleancache"]
    for r in out["results"]:
        ts = r["tag_storage"]
        # 64 pages at 0x40000 (32 per tag page): 2 tag pages; 'other' and the page-cache
        # allocation are not tagged; freeing the first 32 releases one of the two.
        assert ts["reserved_peak"] == 2 and ts["reserved_now"] == 1
        assert ts["reservations"] == 64 and ts["reservation_failures"] == 0
        assert r["tagged_share"] > 0
        assert set(r["invariants"].values()) == {0}
        assert r["page_cache"]["insertions"] == 8


def test_every_task_by_default(tmp_path, capsys):
    out = run_json(["--trace", str(kmem_trace(tmp_path)), "--tagged", "trace",
                    "--backend", "idle", "--capacity", "64"], capsys)
    ts = out["results"][0]["tag_storage"]
    assert ts["reserved_peak"] == 3          # app's two tag pages and other's one


def test_capture_with_generated_tagged_memory(capsys):
    """The small real capture under the scenario's tagged memory: capacity from its sidecar,
    cleancache restores some of the kernel's re-reads, nothing broken."""
    out = run_json(["--trace", str(MINI), "--tagged-share", "0.01"], capsys)
    idle, whole, split = out["results"]
    assert whole["cleancache"]["restored"] > 0
    assert whole["io"]["pages_read"] + whole["cleancache"]["restored"] == idle["io"]["pages_read"]
    alone = [{k: v for k, v in r["page_cache"].items() if k not in CLEANCACHE_DEPENDENT}
             for r in (idle, whole, split)]
    assert alone[0] == alone[1] == alone[2]
    for r in out["results"]:
        assert set(r["invariants"].values()) == {0}
        assert r["tag_storage"]["reservation_failures"] == 0
    meta = json.loads(MINI.with_name("mini-grep.json").read_text())
    cap = (meta["kernel"]["cache_peak"] - meta["buffers_growth_peak"]) // 4096
    assert "cache_peak" not in out["note"] and f"capacity {cap:,} pages" in out["note"]


def test_capture_replays_through_the_validated_page_cache(tmp_path, capsys):
    """With its sidecar, a capture's page cache in `run` is the one `validate` checks against
    the kernel (readahead window, folio sizes, resident pages; with the flags, mappings and
    the metadata's room): the same insertions and re-insertions, design after design."""
    for flags in ((), ("--no-mappings", "--no-metadata")):
        out = run_json(["--trace", str(MINI), "--tagged-share", "0.01", *flags], capsys)
        v = tmp_path / "v.json"
        assert main(["validate", str(MINI), *flags, "--json", str(v)]) == 0
        capsys.readouterr()
        model = json.loads(v.read_text())
        for r in out["results"]:
            got = {k: r["page_cache"][k] for k in ("insertions", "reinsertions")}
            assert got == model["model"], (flags, got, model["model"])
            assert set(r["invariants"].values()) == {0}
        assert f"capacity {model['capacity_pages']:,} pages" in out["note"]
        assert "as the capture's sidecar says" in out["note"]


def test_mappings_need_a_sidecar(tmp_path, capsys):
    lone = tmp_path / "lone.trace.zst"
    lone.write_bytes(MINI.read_bytes())
    assert main(["run", "--no-progress", "--trace", str(lone), "--mappings"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sidecar" in err[0], err


HEAP = ROOT / "captures" / "corpus" / "sqlite-heap-1.trace.zst"


def test_capture_with_samples_replays_through_the_same_room(tmp_path, capsys):
    """A capture with cgroup samples and kmem events (a heap that grows and shrinks): `run`
    follows the same room as `validate` (samples, metadata, anonymous allocations), so the
    model's counts agree; without the samples the room is fixed and they differ."""
    if not HEAP.is_file():
        import pytest
        pytest.skip(f"{HEAP} not present")
    models = {}
    for flags in ((), ("--no-nonfile",)):
        out = run_json(["--trace", str(HEAP), "--backend", "idle", "--tagged-share", "0.01",
                        *flags], capsys)
        v = tmp_path / "v.json"
        assert main(["validate", str(HEAP), *flags, "--json", str(v)]) == 0
        capsys.readouterr()
        model = json.loads(v.read_text())
        for r in out["results"]:
            got = {k: r["page_cache"][k] for k in ("insertions", "reinsertions")}
            assert got == model["model"], (flags, got, model["model"])
        models[flags] = model
    assert models[()]["samples"] > 10 and "nonfile" in models[()]["facts"]
    assert models[()]["model"] != models[("--no-nonfile",)]["model"]
