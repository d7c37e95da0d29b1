"""The page-cache model against real captures of this machine's kernel (DESIGN.md 5).

Targets of the issue: |error| <= 10% on insertions and <= 20% on re-insertions. The small
capture in tests/data runs everywhere; the shared sample and the captures/ folder when present.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tagcache.cli import main
from tagcache.errors import TraceError
from tagcache.sidecar import metadata_pages, sidecar_for
from tagcache.traces import read_trace
from tagcache.units import PAGE_SIZE
from tagcache.validate import accessed_files, kernel_counts, validate_capture, validate_trace
from tagcache.workloads.events import FileTable, Op, TraceBuilder

MKDEV_254_0 = 254 << 20
ROOT = Path(__file__).resolve().parents[2]
MINI = ROOT / "tests" / "data" / "captures" / "mini-grep.trace.zst"
SAMPLE = ROOT.parent / "shared" / "traces" / "dev-sample-grep.trace.zst"
CAPTURES = ROOT / "captures"
WITHIN_TARGET = [MINI, SAMPLE, CAPTURES / "small-files-md5sum.trace.zst",
                 CAPTURES / "tree-rescan.trace.zst"]
WITHIN_TARGET_MAPPED_LESS_METADATA = [
    MINI, CAPTURES / "small-files-md5sum.trace.zst", CAPTURES / "tree-rescan.trace.zst",
    CAPTURES / "sqlite-point-queries.trace.zst", CAPTURES / "git-log-p.trace.zst"]


_validate = validate_capture


CENSORED = [CAPTURES / "git-log-p.trace.zst", CAPTURES / "git-log-p-12m.trace.zst"]


@pytest.mark.parametrize("path", WITHIN_TARGET, ids=lambda p: p.name.split(".")[0])
def test_model_within_target(path):
    if not path.is_file():
        pytest.skip(f"{path} not present")
    v = _validate(path)
    assert abs(v.error["insertions"]) <= 0.10, v.to_json()
    assert abs(v.error["reinsertions"]) <= 0.20, v.to_json()
    assert v.censored < 0.15, v.to_json()


@pytest.mark.parametrize("path", WITHIN_TARGET_MAPPED_LESS_METADATA,
                         ids=lambda p: p.name.split(".")[0])
def test_model_within_target_with_mappings_and_less_metadata(path):
    """With the sidecar's mappings and the capacity less the metadata the recorder measured, the
    read(2) captures and the 16 MiB history walk come within target (README: the remaining
    default-mode error is filesystem metadata, which a trace does not let a model see)."""
    if not path.is_file():
        pytest.skip(f"{path} not present")
    v = _validate(path, mappings=True, minus_metadata=True)
    assert abs(v.error["insertions"]) <= 0.10, v.to_json()
    assert abs(v.error["reinsertions"]) <= 0.20, v.to_json()


def test_minus_metadata_takes_the_recorded_metadata_off_the_capacity():
    """The room is the sidecar's measured buffers_growth_peak; the block device's add events
    in the trace, which the model may not use, change nothing."""
    files = FileTable.build([MKDEV_254_0, 3 << 20 | 0], [0x77, 0xfe00000], [8, 1 << 20])
    b = TraceBuilder()
    b.add(Op.GET_PAGES, 0, 0, 1)
    for i in range(10):                                  # 10 metadata pages in the trace
        b.add(Op.KERNEL_ADD, 1, 100 + i, 0)
    trace = b.build(files)
    meta = {"name": "t", "buffers_growth_peak": 6 * PAGE_SIZE + 100}
    assert metadata_pages(meta) == 6
    assert validate_trace(trace, 64, meta=meta, minus_metadata=True).capacity_pages == 58
    assert validate_trace(trace, 64, meta=meta).capacity_pages == 58       # the default
    assert validate_trace(trace, 64, meta=meta, metadata=False).capacity_pages == 64
    assert validate_trace(trace, 64, meta=meta, naive=True).capacity_pages == 64
    with pytest.raises(TraceError, match="buffers_growth_peak"):
        validate_trace(trace, 64, meta={"name": "t"}, minus_metadata=True)


def test_validate_minus_metadata_needs_the_recorded_field(tmp_path, capsys):
    """An older sidecar without buffers_growth_peak: one clear line, exit status 2."""
    old = tmp_path / "old.trace.zst"
    old.write_bytes(MINI.read_bytes())
    side = json.loads(sidecar_for(MINI).read_text())
    del side["buffers_growth_peak"]
    sidecar_for(old).write_text(json.dumps(side))
    assert main(["validate", str(old), "--minus-metadata"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "buffers_growth_peak" in err[0], err


def test_large_folios_as_the_sidecar_measured_them():
    """folio_orders with any order above 0: the model gives the files large folios; an
    explicit choice wins over the sidecar."""
    files = FileTable.build([MKDEV_254_0], [0x77], [256], [256])
    b = TraceBuilder()
    for i in range(0, 192, 8):
        b.add(Op.GET_PAGES, 0, i, 8)
    trace = b.build(files)
    large = {"folio_orders": {"0": 10, "2": 12}}
    small = {"folio_orders": {"0": 10}}
    assert validate_trace(trace, 1000, ra_pages=32, meta=large).large_folios
    assert not validate_trace(trace, 1000, ra_pages=32, meta=small).large_folios
    assert not validate_trace(trace, 1000, ra_pages=32).large_folios
    assert not validate_trace(trace, 1000, ra_pages=32, meta=large,
                              large_folios=False).large_folios
    assert validate_trace(trace, 1000, ra_pages=32, meta=small, large_folios=True).large_folios


def test_large_folios_bring_the_mmap_walk_closer():
    """git log -p at read_ahead_kb 128: the kernel gave the pack large folios (the sidecar's
    folio_orders), and reclaim activates a mapped large folio at its first scan. Modelled
    with order-0 folios, the walk's re-insertions fall far short (-52%)."""
    path = CAPTURES / "git-log-p-ra128.trace.zst"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    large = _validate(path, mappings=True, minus_metadata=True)
    small = _validate(path, mappings=True, minus_metadata=True, large_folios=False)
    assert large.large_folios and not small.large_folios
    assert abs(large.error["reinsertions"]) < 0.7 * abs(small.error["reinsertions"]), \
        (large.to_json(), small.to_json())
    assert abs(large.error["insertions"]) <= 0.10


def test_per_file_counts_add_up_to_the_totals(capsys):
    """by_file splits both sides' counts per file, named as the sidecar names files; the
    command lists the files that differ most."""
    v = _validate(MINI, mappings=True, minus_metadata=True)
    for side in ("kernel", "model"):
        for k in ("insertions", "reinsertions"):
            assert sum(r[side][k] for r in v.by_file) == getattr(v, side)[k]
    assert len(v.by_file) == v.files
    assert all(re.fullmatch(r"\d+:\d+:[0-9a-f]+", r["file"]) for r in v.by_file)
    kernel_ins = [r["kernel"]["insertions"] for r in v.by_file]
    assert kernel_ins == sorted(kernel_ins, reverse=True)
    top = v.diverging_files(3)
    assert 0 < len(top) <= 3
    assert main(["validate", str(MINI), "--mappings", "--minus-metadata", "--by-file", "3"]) == 0
    out = capsys.readouterr().out
    assert "files where model and kernel differ most" in out
    assert all(r["file"] in out for r in top)


def test_kernel_reinsertions_per_file_and_paths_from_the_sidecar():
    files = FileTable.build([MKDEV_254_0, MKDEV_254_0], [0x77, 0x78], [8, 8])
    b = TraceBuilder()
    b.add(Op.GET_PAGES, 0, 0, 1)
    b.add(Op.GET_PAGES, 1, 0, 1)
    for f, i, order in ((0, 0, 2), (1, 0, 0), (0, 2, 0), (0, 0, 1), (1, 1, 0)):
        b.add(Op.KERNEL_ADD, f, i, order)
    v = validate_trace(b.build(files), 64, ra_pages=0, meta={"paths": {"254:0:78": "/b"}})
    assert {r["file"]: r["kernel"] for r in v.by_file} == {
        "254:0:77": {"insertions": 7, "reinsertions": 3},
        "254:0:78": {"insertions": 2, "reinsertions": 0}}
    assert {r["file"]: r["path"] for r in v.by_file} == {"254:0:77": None, "254:0:78": "/b"}
    # The kernel's folio orders per file, from its add events (a diagnostic), beside the
    # model's (order-0 reads with readahead off).
    assert {r["file"]: r["folio_orders"] for r in v.by_file} == {
        "254:0:77": {"kernel": {"0": 1, "1": 1, "2": 1}, "model": {"0": 1}},
        "254:0:78": {"kernel": {"0": 2}, "model": {"0": 1}}}
    assert v.folio_orders == {"kernel": {"0": 3, "1": 1, "2": 1}, "model": {"0": 2}}


@pytest.mark.parametrize("path", CENSORED, ids=lambda p: p.name.split(".")[0])
def test_mmap_history_walk_is_flagged_as_censored(path):
    """git log -p reads its pack through mmap under pressure: most of what the kernel read
    came on faults where the model had the page, and the model's counts fall short."""
    if not path.is_file():
        pytest.skip(f"{path} not present")
    v = _validate(path, mappings=False, metadata=False)
    assert v.censored > 0.3, v.to_json()
    assert v.interval.contains(v.kernel), v.to_json()
    f = v.faults
    assert f["kernel_hit_model_miss"] * 10 < f["kernel_miss_model_hit"], v.to_json()
    assert v.model["insertions"] < v.kernel["insertions"], v.to_json()


def test_kernel_counts_follow_the_definition():
    """Insertions are pages added on files with access events; re-insertions are the adds
    of a page added before: the shared sample's re-insertions equal the kernel's own
    workingset_refault_file count in its sidecar."""
    if not SAMPLE.is_file():
        pytest.skip(f"{SAMPLE} not present")
    trace = read_trace(SAMPLE)
    k = kernel_counts(trace, accessed_files(trace))
    assert k == {"insertions": 12512, "reinsertions": 8113}
    assert json.loads(SAMPLE.with_name("dev-sample-grep.json").read_text())["kernel"][
        "workingset_refault_file"] == k["reinsertions"]


def test_validate_command_json(tmp_path, capsys):
    out = tmp_path / "v.json"
    assert main(["validate", str(MINI), "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "insertions" in table and "reinsertions" in table
    data = json.loads(out.read_text())
    assert set(data) >= {"kernel", "model", "error"}
    for part in ("kernel", "model", "error"):
        assert set(data[part]) == {"insertions", "reinsertions"}
    assert data["error"]["insertions"] == pytest.approx(
        data["model"]["insertions"] / data["kernel"]["insertions"] - 1)


def test_validate_needs_a_sidecar(tmp_path, capsys):
    lone = tmp_path / "x.trace.zst"
    lone.write_bytes(MINI.read_bytes())
    assert main(["validate", str(lone)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tagcache: error:") and "x.json" in err[0]


def test_faults_are_classified_by_kernel_and_model_residency():
    """Each fault is compared with the kernel's cache as its add/delete events left it; the
    pages the kernel added right after a fault count for that fault's class."""
    files = FileTable.build([MKDEV_254_0], [0x77], [8], [8])
    b = TraceBuilder()
    b.add(Op.FAULT, 0, 2)                      # nothing cached anywhere: both miss
    for i in range(8):                         # the kernel reads the file (order 0 folios)
        b.add(Op.KERNEL_ADD, 0, i, 0)
    b.add(Op.FAULT, 0, 3)                      # both cached: both hit
    b.add(Op.KERNEL_DELETE, 0, 5, 0)           # the kernel evicts page 5, the model keeps it
    b.add(Op.FAULT, 0, 5)                      # kernel misses, model hits
    b.add(Op.KERNEL_ADD, 0, 5, 0)              # ... and the kernel reads it back
    v = validate_trace(b.build(files), 64, ra_pages=8)
    assert v.faults == {"both_hit": 1, "kernel_miss_model_hit": 1,
                        "kernel_hit_model_miss": 0, "both_miss": 1}
    assert v.fault_pages == {"both_hit": 0, "kernel_miss_model_hit": 1,
                             "kernel_hit_model_miss": 0, "both_miss": 8}
    assert v.kernel == {"insertions": 9, "reinsertions": 1}
    assert v.censored == pytest.approx(1 / 9)
    assert v.to_json()["faults"] == v.faults


def test_mappings_change_the_model_only_when_asked():
    """--mappings: a fault in the sidecar's executable mapping reads forward within it, not
    around the fault."""
    files = FileTable.build([MKDEV_254_0], [0x77], [64], [64])
    b = TraceBuilder()
    b.add(Op.FAULT, 0, 40)
    trace = b.build(files)
    meta = {"exec_mappings": {"254:0:77": [[32, 16]]}}
    plain = validate_trace(trace, 1000, ra_pages=32, meta=meta, mappings=False)
    assert plain.model["insertions"] == 32                 # read-around: 24..55
    exe = validate_trace(trace, 1000, ra_pages=32, meta=meta)     # the default: mapped
    assert exe.model["insertions"] == 8                    # forward: 40..47, the VMA's end
    assert validate_trace(trace, 1000, ra_pages=32, meta=meta, naive=True).model == \
        plain.model


def test_validate_command_uses_every_fact_unless_naive(tmp_path):
    """By default validate takes the sidecar's mappings and metadata (and the rest); each can
    be switched off, and --naive switches all off."""
    runs = {}
    for flags in (("--no-mappings", "--no-metadata"), ("--no-metadata",), (), ("--naive",)):
        out = tmp_path / f"{len(runs)}.json"
        assert main(["validate", str(MINI), *flags, "--json", str(out)]) == 0
        runs[flags] = json.loads(out.read_text())
    plain, mapped, every, naive = runs.values()
    assert plain["kernel"] == mapped["kernel"] == every["kernel"] == naive["kernel"]
    assert plain["model"] != mapped["model"]
    assert every["capacity_pages"] < mapped["capacity_pages"] == plain["capacity_pages"]
    assert set(every["facts"]) >= {"mappings", "metadata", "resident_at_start"}
    assert naive["facts"] == [] and naive["naive"]
    assert naive["capacity_pages"] == plain["capacity_pages"]
    assert naive["model"] != plain["model"]          # no resident pages preloaded
    assert set(plain["faults"]) == {"both_hit", "kernel_miss_model_hit",
                                    "kernel_hit_model_miss", "both_miss"}


def test_large_folios_follow_each_files_filesystem():
    """A mapping supports large folios by its filesystem and the kernel release (ext4 since
    6.16, xfs since 5.18), file by file; the cgroup's folio_orders at the end is only the
    fallback for sidecars that do not name the filesystems."""
    from tagcache.sidecar import capture_facts

    files = FileTable.build([MKDEV_254_0, 8 << 20 | 1, 0 << 20 | 3], [1, 2, 3], [64] * 3)
    trace = TraceBuilder().build(files)
    meta = {"filesystems": {"254:0": "ext4", "8:1": "tmpfs"}, "kernel_release": "6.18.44-x",
            "folio_orders": {"0": 10}}
    assert capture_facts(trace, meta).file_large_folios(files).tolist() == [True, False, False]
    older = meta | {"kernel_release": "6.15.2"}
    assert capture_facts(trace, older).file_large_folios(files).tolist() == [False] * 3
    xfs = meta | {"filesystems": {"254:0": "xfs"}, "kernel_release": "5.18.0"}
    assert capture_facts(trace, xfs).file_large_folios(files).tolist() == [True, False, False]
    fallback = {"folio_orders": {"0": 10, "2": 4}}
    assert capture_facts(trace, fallback).file_large_folios(files).tolist() == [True] * 3
    assert "filesystems" in capture_facts(trace, meta).used
    assert "folio_orders" in capture_facts(trace, fallback).used
