"""Writes the trace fixtures of this folder (run from the repository root; output is committed).

``seq.*``: one request sequence of 1-page reads in every format (blkparse, msr, csv, txt,
oracleGeneral). ``mixed.*``: one sequence of multi-page, unaligned reads and writes in the
formats that carry sizes (blkparse, msr, cloudPhysics-style csv). ``grep-head.trace.zst``: the
first 2000 lines of the real ftrace capture ../shared/traces/dev-sample-grep.trace.zst.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import zstandard

HERE = Path(__file__).parent
SEQ_PAGES = [0, 1, 2, 0, 5, 1, 7, 3, 0, 2, 9, 4, 5, 5, 8, 1, 6, 0, 3, 7]
# (write?, byte offset, bytes): sector-aligned, some not page-aligned
MIXED = [(False, 0, 4096), (True, 3 * 4096 + 512, 8192), (False, 7 * 512, 1024),
         (True, 40960, 65536), (False, 12288, 512), (False, 1 << 20, 4096 * 3),
         (True, 4095 * 512, 1024), (False, 0, 4096)]
CAPTURE = HERE.parents[3] / "shared" / "traces" / "dev-sample-grep.trace.zst"


def blkparse_lines(requests: list[tuple[bool, int, int]]) -> list[str]:
    """Q, G, I, D, C per request, as blkparse prints them, then its summary."""
    out, seq, t = [], 0, 0.0
    for write, offset, size in requests:
        rwbs = "WS" if write else "R"
        sector, count = offset // 512, size // 512
        for action in ("Q", "G", "I", "D", "C"):
            seq += 1
            t += 0.000001
            comm = "[0]" if action == "C" else "[kworker/u8:2-ev]"
            out.append(f"  8,0    1 {seq:8d} {t:14.9f}   697  {action} {rwbs:>3} "
                       f"{sector} + {count} {comm}")
    out.append("  8,0    1        0     0.000200000     0  m   N cfq697 slice expired")
    out += ["", "CPU1 (sda):", " Reads Queued:          12,       48KiB\t Writes Queued: 8,  32KiB",
            " Read Dispatches:       12,       48KiB\t Write Dispatches: 8, 32KiB",
            "Total (sda):", " Reads Queued:          12,       48KiB",
            "Throughput (R/W): 240000KiB/s / 160000KiB/s", "Events (sda): 100 entries",
            "Skips: 0 forward (0 -   0.0%)"]
    return out


def msr_lines(requests: list[tuple[bool, int, int]]) -> list[str]:
    return [f"{128166372003061629 + i * 1000},hm,1,{'Write' if w else 'Read'},{off},{size},"
            f"{1244 + i}" for i, (w, off, size) in enumerate(requests)]


def main() -> None:
    seq = [(False, p * 4096, 4096) for p in SEQ_PAGES]
    (HERE / "seq.blkparse").write_text("\n".join(blkparse_lines(seq)) + "\n")
    (HERE / "seq-msr.csv").write_text("\n".join(msr_lines(seq)) + "\n")
    (HERE / "seq.csv").write_text("time,obj_id,obj_size\n" + "".join(
        f"{i + 1},{p},4096\n" for i, p in enumerate(SEQ_PAGES)))
    (HERE / "seq.txt").write_text("".join(f"{p}\n" for p in SEQ_PAGES))
    records = []
    for i, p in enumerate(SEQ_PAGES):
        nxt = next((j for j in range(i + 1, len(SEQ_PAGES)) if SEQ_PAGES[j] == p), -1)
        records.append(struct.pack("<IQIq", i + 1, p, 4096, nxt))
    (HERE / "seq.oracleGeneral").write_bytes(b"".join(records))

    (HERE / "mixed.blkparse").write_text("\n".join(blkparse_lines(MIXED)) + "\n")
    (HERE / "mixed-msr.csv").write_text("\n".join(msr_lines(MIXED)) + "\n")
    (HERE / "mixed-cloudphysics.csv").write_text("version,time,op,size,lbn\n" + "".join(
        f"1,{100 + i},{'2a' if w else '28'},{size},{off // 512}\n"
        for i, (w, off, size) in enumerate(MIXED)))

    if CAPTURE.exists():
        text = zstandard.ZstdDecompressor().stream_reader(CAPTURE.open("rb")).read()
        head = b"".join(text.splitlines(keepends=True)[:2000])
        (HERE / "grep-head.trace.zst").write_bytes(zstandard.ZstdCompressor(19).compress(head))
    else:
        print(f"{CAPTURE} not found: grep-head.trace.zst left as it is", file=sys.stderr)


if __name__ == "__main__":
    main()
