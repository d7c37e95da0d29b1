"""Block traces: blkparse text and MSR Cambridge csv."""

from __future__ import annotations

import pytest
from trace_paths import DATA

from tagcache.errors import TraceError
from tagcache.traces import read_trace
from tagcache.workloads.events import Op

BLK = """\
  8,0    1        1     0.000000000   697  Q  WS 3802888 + 8 [jbd2/sda3-8]
  8,0    1        2     0.000001000   697  G  WS 3802888 + 8 [jbd2/sda3-8]
  8,0    1        3     0.000002000   697  D  WS 3802888 + 8 [jbd2/sda3-8]
  8,16   0        1     0.000003000   700  Q  RA 16 + 16 [my prog]
  8,0    1        4     0.000004000   697  Q  DS 100 + 8 [fstrim]
  8,0    1        5     0.000005000   697  Q FWS 0 + 0 [jbd2/sda3-8]
  8,0    1        6     0.000006000   697  Q   N [scsi_id]
  8,0    1        7     0.000007000   697  C  WS 3802888 + 8 [0]
  8,0    1        8     0.000008000   697  P   N [jbd2/sda3-8]
  8,0    1        9     0.000009000   697  Q   R 7 + 2 [cat]

CPU1 (sda):
 Reads Queued:           1,        4KiB\t Writes Queued:           1,        4KiB
Total (sda):
Events (sda): 9 entries
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_blkparse_queue_actions_and_devices(tmp_path):
    trace = read_trace(write(tmp_path, "t.blkparse", BLK), use_cache=False)
    # page 475361 of sda is in 2 MiB extent 928; extents 0 (pages 0, 1) and 928 are used, the
    # gap between them keeps 4 + 4 extents: 928 becomes extent 9, offset 225 kept
    far = 9 * 512 + (3802888 * 512 >> 12) % 512
    assert list(zip(trace.op.tolist(), trace.arg0.tolist(), trace.arg1.tolist(),
                    trace.arg2.tolist(), strict=True)) == [
        (Op.WRITE, 0, far, 1),
        (Op.READ, 1, 2, 2),
        (Op.READ, 0, 0, 2),                # sectors 7..8 cross a page boundary
    ]
    assert trace.files.dev.tolist() == [8 << 20, (8 << 20) | 16]
    assert trace.files.span_pages.tolist() == [far + 1, 4]
    assert trace.extents.runs(0, 3802888 * 512 >> 12, 1) == [(far, 1)]


def test_blkparse_without_queue_uses_dispatch_then_complete(tmp_path):
    only_c = "\n".join(ln for ln in BLK.splitlines() if " C " in ln) + "\n"
    trace = read_trace(write(tmp_path, "c.blkparse", only_c), "blkparse", use_cache=False)
    assert len(trace) == 1 and trace.op[0] == Op.WRITE
    dc = "\n".join(ln for ln in BLK.splitlines() if " C " in ln or " D " in ln) + "\n"
    trace = read_trace(write(tmp_path, "dc.blkparse", dc), "blkparse", use_cache=False)
    assert len(trace) == 1


def test_blkparse_bad_line(tmp_path):
    bad = BLK.replace("Q   R 7 + 2 [cat]", "Q   R 7 x 2 [cat]")
    path = write(tmp_path, "b.blkparse", bad)
    with pytest.raises(TraceError, match=r"b\.blkparse:10: expected 'M,m CPU SEQ"):
        read_trace(path, use_cache=False)
    assert read_trace(path, skip_bad_lines=True, use_cache=False).skipped_lines == 1


def test_blkparse_fixture_has_all_actions():
    text = (DATA / "seq.blkparse").read_text()
    assert all(f" {a} " in text for a in "QGIDC") and "Total (sda):" in text


def test_msr_hosts_and_disks(tmp_path):
    text = ("Timestamp,Hostname,DiskNumber,Type,Offset,Size,ResponseTime\n"
            "1,hm,1,Read,0,4096,5\n2,src1,0,Write,8192,100,5\n3,hm,0,Read,4096,0,5\n"
            "4,hm,1,Write,4000,200,5\n")
    trace = read_trace(write(tmp_path, "m.csv", text), use_cache=False)
    assert trace.op.tolist() == [Op.READ, Op.WRITE, Op.WRITE]
    assert trace.arg0.tolist() == [0, 1, 0]
    assert trace.arg1.tolist() == [0, 2, 0] and trace.arg2.tolist() == [1, 1, 2]
    assert trace.files.dev.tolist() == [0, 1] and trace.files.ino.tolist() == [1, 0]


def test_msr_bad_line(tmp_path):
    text = (DATA / "seq-msr.csv").read_text().replace(",Read,8192,", ",Peek,8192,", 1)
    path = write(tmp_path, "m.csv", text)
    with pytest.raises(TraceError, match=r"m\.csv:3: expected 'Timestamp,Hostname"):
        read_trace(path, "msr", use_cache=False)
    trace = read_trace(path, "msr", skip_bad_lines=True, use_cache=False)
    assert len(trace) == 19 and trace.skipped_lines == 1
