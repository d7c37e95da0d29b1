"""Synthetic workloads: a file workload and an anonymous-memory workload, merged into one trace.

File workload (one trace shared by every design, so comparisons are like for like):

* ``zipf``: reads of ``read_pages`` pages at chunk-aligned offsets; chunk popularity follows a
  Zipf law of exponent ``zipf_alpha`` over all chunks of all files (randomly ranked).
* ``scan``: one file read start to end in ``ra_pages``-sized reads (a grep, a backup).
* ``loop``: the next file of a fixed loop set read start to end (a periodic batch job).
* ``write``: ``read_pages`` pages overwritten in place at a Zipf-chosen chunk.
* ``truncate``: a file truncated to half and rewritten (log rotation, a rewritten artifact).
* ``mmap``: a page fault at a Zipf-chosen chunk plus the fault-around mapping of its 16 pages.

Anonymous workload (the same at every tagged share; only which pages carry PROT_MTE changes):
processes of ``process_pages`` (the last one smaller) cover ``anon_pages`` at the start; then
``churn_events`` operations, drawn with a random generator that does not depend on the share,
are spread evenly over the file events: a process restarts (exit, then a new one maps as much,
as many of its pages PROT_MTE as before), forks with its child writing a quarter of its pages
(CoW) and exiting later, swaps an eighth out and back in later, or has a sixteenth migrated by
compaction. At tagged share *s*, ``round(s * data_pages)`` PROT_MTE pages go to the processes in
order: process 0 fully tagged, then 1, and so on, the one that reaches the total partly (its
first pages); ``MTE_MAP``'s arg2 says how many.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tagcache.workloads.events import FileTable, Op, Trace, TraceBuilder

FILE_MIX_KEYS = ("zipf", "scan", "loop", "write", "truncate", "mmap")
TAGGED_MIX_KEYS = ("restart", "fork", "swap", "migrate")


@dataclass(frozen=True)
class FileWorkload:
    """The file workload; the defaults are the embedded default scenario's (scenario.py)."""

    files: int = 128
    file_size_pages: int = 2048          # mean; sizes are log-normal around it
    large_folio_share: float = 0.5
    events: int = 3500
    read_pages: int = 16
    scan_read_pages: int = 32
    zipf_alpha: float = 0.9
    loop_files: int = 8
    mix: tuple[tuple[str, float], ...] = (("zipf", 0.80), ("scan", 0.04), ("loop", 0.04),
                                          ("write", 0.05), ("truncate", 0.01), ("mmap", 0.06))


@dataclass(frozen=True)
class TaggedWorkload:
    """The anonymous memory of the running processes, ``share`` of data memory PROT_MTE.

    ``anon_pages``: all anonymous memory, tagged or not (scenario key ``machine.anon``); 0
    means only the tagged share, in fully tagged processes, so that the event stream then
    depends on the share.
    """

    share: float = 0.01
    process_pages: int = 16384           # 64 MiB
    churn_events: int = 80
    anon_pages: int = 0
    mix: tuple[tuple[str, float], ...] = (("restart", 0.4), ("fork", 0.2), ("swap", 0.25),
                                          ("migrate", 0.15))


def make_files(w: FileWorkload, rng: np.random.Generator) -> FileTable:
    sizes = rng.lognormal(mean=math.log(w.file_size_pages) - 0.5, sigma=1.0, size=w.files)
    sizes = np.clip(sizes.astype(np.int64), w.read_pages, 64 * w.file_size_pages)
    large = rng.random(w.files) < w.large_folio_share
    ino = 0x1000 + np.arange(w.files)
    return FileTable.build(np.full(w.files, 0x800001), ino, sizes, sizes, large)


def file_events(w: FileWorkload, files: FileTable, seed: int) -> np.ndarray:
    """The file workload as an (N, 4) event block; N >= ``w.events`` (scans expand)."""
    rng = np.random.default_rng(seed)
    sizes = files.size_pages
    rp = w.read_pages
    nchunks = sizes // rp
    chunk_file = np.repeat(np.arange(len(sizes)), nchunks)
    chunk_off = np.concatenate([np.arange(n) * rp for n in nchunks])
    ranks = rng.permutation(len(chunk_file))
    p = 1.0 / np.arange(1, len(chunk_file) + 1) ** w.zipf_alpha
    p /= p.sum()
    names = [k for k, _ in w.mix]
    probs = np.array([v for _, v in w.mix], float)
    kinds = rng.choice(len(names), size=w.events, p=probs / probs.sum())
    picks = ranks[rng.choice(len(chunk_file), size=w.events, p=p)]
    loop_set = rng.choice(len(sizes), size=min(w.loop_files, len(sizes)), replace=False)
    loop_pos = 0
    rows: list[tuple[int, int, int, int]] = []
    sp = w.scan_read_pages

    def scan(f: int) -> None:
        n = int(sizes[f])
        for off in range(0, n, sp):
            rows.append((Op.READ, f, off, min(sp, n - off)))

    for kind, c in zip(kinds.tolist(), picks.tolist(), strict=True):
        name = names[kind]
        f, off = int(chunk_file[c]), int(chunk_off[c])
        if name == "zipf":
            rows.append((Op.READ, f, off, rp))
        elif name == "scan":
            scan(int(rng.integers(len(sizes))))
        elif name == "loop":
            scan(int(loop_set[loop_pos % len(loop_set)]))
            loop_pos += 1
        elif name == "write":
            rows.append((Op.WRITE, f, off, rp))
        elif name == "truncate":
            n = int(sizes[f])
            rows.append((Op.TRUNCATE, f, n // 2, 0))
            rows.append((Op.WRITE, f, n // 2, n - n // 2))
        elif name == "mmap":
            rows.append((Op.MAP_PAGES, f, off, 16))
            rows.append((Op.FAULT, f, off, 0))
    return np.array(rows, np.int64).reshape(-1, 4)


def anon_events(w: TaggedWorkload, data_pages: int, n_file_events: int, seed: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Anonymous-memory events and, for each, the file-event index it goes before.

    Everything but arg2 of ``MTE_MAP`` (PROT_MTE pages among the mapped ones) is the same at
    every ``w.share`` as long as ``w.anon_pages`` covers the tagged pages.
    """
    rng = np.random.default_rng(seed + 1)
    tagged = int(round(w.share * data_pages))
    total = max(w.anon_pages, tagged)
    if total <= 0:
        return np.zeros((0, 4), np.int64), np.zeros(0, np.int64)
    nproc = max(1, math.ceil(total / w.process_pages))
    sizes = [w.process_pages] * (nproc - 1) + [total - w.process_pages * (nproc - 1)]
    prot = np.clip(tagged - np.concatenate([[0], np.cumsum(sizes)[:-1]]), 0, sizes).tolist()
    rows: list[tuple[int, int, int, int]] = []
    at: list[int] = []
    for pid, (n, k) in enumerate(zip(sizes, prot, strict=True)):
        rows.append((Op.MTE_MAP, pid, n, k))
        at.append(0)
    live = {pid: (n, k) for pid, (n, k) in enumerate(zip(sizes, prot, strict=True))}
    next_pid = nproc
    names = [k for k, _ in w.mix]
    probs = np.array([v for _, v in w.mix], float)
    when = np.linspace(1, max(1, n_file_events - 1), w.churn_events, dtype=np.int64)
    gap = max(1, n_file_events // max(1, w.churn_events) // 2)
    for t, kind in zip(when.tolist(), rng.choice(len(names), size=w.churn_events,
                                                  p=probs / probs.sum()).tolist(), strict=True):
        pid = int(rng.choice(list(live)))
        n, k = live[pid]
        later = min(n_file_events, t + gap)
        name = names[kind]
        if name == "restart":
            rows += [(Op.MTE_EXIT, pid, 0, 0), (Op.MTE_MAP, next_pid, n, k)]
            at += [t, t]
            del live[pid]
            live[next_pid] = (n, k)
            next_pid += 1
        elif name == "fork":
            child = next_pid
            next_pid += 1
            rows += [(Op.MTE_FORK, pid, child, 0), (Op.MTE_COW, child, max(1, n // 4), 0),
                     (Op.MTE_EXIT, child, 0, 0)]
            at += [t, t, later]
        elif name == "swap":
            rows += [(Op.MTE_SWAP_OUT, pid, max(1, n // 8), 0),
                     (Op.MTE_SWAP_IN, pid, max(1, n // 8), 0)]
            at += [t, later]
        elif name == "migrate":
            rows.append((Op.MTE_MIGRATE, pid, max(1, n // 16), 0))
            at.append(t)
    ev = np.array(rows, np.int64).reshape(-1, 4)
    pos = np.array(at, np.int64)
    order = np.argsort(pos, kind="stable")
    return ev[order], pos[order]


def merge(file_ev: np.ndarray, tag_ev: np.ndarray, tag_at: np.ndarray) -> np.ndarray:
    """Insert anonymous-memory events before the file events they are scheduled at."""
    if not len(tag_ev):
        return file_ev
    at = np.clip(np.asarray(tag_at, np.int64), 0, len(file_ev))
    order = np.argsort(at, kind="stable")
    at, tag_ev = at[order], np.asarray(tag_ev)[order]
    # As np.insert(file_ev, at, tag_ev, axis=0), by slices: the file events between two
    # insertion points move as one block (a long trace, a few thousand tag events).
    out = np.empty((len(file_ev) + len(tag_ev), file_ev.shape[1]), file_ev.dtype)
    prev = 0
    for k, a in enumerate(at.tolist()):
        out[prev + k:a + k] = file_ev[prev:a]
        out[a + k] = tag_ev[k]
        prev = a
    out[prev + len(at):] = file_ev[prev:]
    return out


def generate(fw: FileWorkload, tw: TaggedWorkload, data_pages: int, seed: int,
             name: str = "generated") -> Trace:
    """The merged trace for one tagged share."""
    rng = np.random.default_rng(seed)
    files = make_files(fw, rng)
    fev = file_events(fw, files, seed)
    tev, at = anon_events(tw, data_pages, len(fev), seed)
    b = TraceBuilder()
    b.extend(merge(fev, tev, at))
    return b.build(files, name)
