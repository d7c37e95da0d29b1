"""The sidecar NAME.json: its fields, how each is measured, and its text.

DESIGN.md section 5 defines ``{"name", "limit_mib", "seconds", "trace_overrun_events",
"command", "exit_code", "kernel": {...}}``. The ``kernel`` fields come from the cgroup's
memory.stat at the end:

==========================  ==============================  ==================================
sidecar field               cgroup v1                       cgroup v2
==========================  ==============================  ==================================
cache                       cache (bytes)                   file (bytes)
inactive_file, active_file  same name (bytes)               same name (bytes)
cache_peak                  max of ``cache`` sampled        max of ``file`` sampled
pgmajfault                  pgmajfault                      pgmajfault
workingset_refault_file     workingset_refault_file, else   workingset_refault_file
                            delta of /proc/vmstat (global)
pgpgin, pgpgout             pgpgin, pgpgout (pages charged  delta of /proc/vmstat pgpgin /
                            and uncharged)                  pgpgout in pages (global block
                                                            I/O: v2 has no charge counters)
==========================  ==============================  ==================================

Ten more fields (DESIGN.md 5 allows more) say what a model replaying the access events
cannot learn from them, and would otherwise get wrong:

``read_ahead_kb``: ``{"M:m": KiB}``
    ``/sys/class/bdi/M:m/read_ahead_kb`` of every device whose inodes appear in the filemap
    events (devices without a bdi entry, such as the block-device inodes' 0:3, are left
    out), read just before CMD starts. It sets the readahead window sizes (ra_pages), and a
    machine's value can be far from the kernel default of 128 KiB (8192 on this one's vda).

``resident_at_start``: ``{"M:m:inohex": [[first_page, npages], ...]}``
    The pages in the page cache, right after drop_caches and just before CMD starts, of every
    regular file then mapped by any process of the machine, the recorder's own included (its
    python and libraries). drop_caches cannot drop mapped pages, so libc, ld.so, the shell
    and the like stay resident; they are charged to other cgroups, so CMD hits them without
    the kernel inserting them and the capture's memcg reclaim never evicts them. A model that
    starts from an empty cache inserts them instead, which inflated modelled insertions by
    10-15% on the captures of captures/. Keys are spelled as the trace prints dev and ino
    (``dev=254:0 ino=52db4``: decimal major:minor, inode in lowercase hex), the dev being the
    /proc/PID/maps column (the inode's superblock s_dev, as the tracepoints print it).
    Residency comes from mincore(2) on a read-only MAP_SHARED mapping of each file: nothing
    is read and no page is faulted in. Files with no resident page, deleted files,
    non-regular files and files over 4 GiB are left out; runs are sorted, disjoint and in
    units of PAGE_SIZE pages.

``exec_mappings``: ``{"M:m:inohex": [[vm_pgoff, npages], ...]}``
    The executable file mappings (``x`` in /proc/PID/maps: program text, shared libraries'
    text) of CMD's processes, read at every sample while CMD runs, as file page ranges,
    merged. The filemap events do not say whether a fault came through a VM_EXEC mapping,
    yet the kernel treats those differently: a fault miss reads forward within the VMA
    rather than around the fault (Linux 6.16+), and reclaim activates young executable
    folios at once and keeps them active while young. A process that lives less than one
    sample interval (10 ms by default) can be missed; its binary is usually mapped by a
    longer-lived process of the same command too.

``cow_mappings``: ``{"M:m:inohex": [[first_page, npages], ...]}``
    For each file of ``exec_mappings`` (programs and shared libraries), the file pages of its
    writable PT_LOAD segments (.data, .got, the RELRO part before ld.so protects it), read
    from the ELF program headers after CMD exits. Processes map them private and writable and
    copy them on the first write (do_cow_fault(), wp_page_copy()): the page-cache folio is
    read but does not stay mapped, so reclaim finds it unreferenced, where a fault event alone
    would suggest a mapped, young page.

``paths``: ``{"M:m:inohex": "/path"}``
    The path of every regular file that CMD's processes had mapped or open at a sample
    (/proc/PID/maps, /proc/PID/fd), so that per-file results (``tagcache validate
    --by-file``) can name files. Files opened and closed between two samples are missed.

``buffers_growth_peak``: bytes
    The most that /proc/meminfo ``Buffers`` (nr_blockdev_pages(): the page cache of the block
    devices themselves, i.e. filesystem metadata: ext4 inode-table blocks, directory blocks,
    extent and bitmap blocks) rose above its value when CMD started, sampled with the
    cgroup's cache. Those pages are charged to CMD's cgroup and compete with file data for
    the limit, but have no access events, so a model cannot see them; this is how much room
    they took (``tagcache validate --minus-metadata``). Buffers is system-wide, so metadata
    read by other activity on the machine while CMD runs adds to it; on an idle machine it
    equalled the peak of the capture's own block-device add and delete events in five
    captures of six, and a short run's peak can fall between two samples (mini-grep, 0.1 s:
    465 pages against 520; captures/README.md).

``cgroup_samples``: int
    How many samples of the cgroup's memory over time the trace holds: one just before CMD
    starts, one every sample interval (10 ms by default) while it runs, one right after it
    exits. Each is a line the recorder wrote to its tracefs instance's ``trace_marker``, so
    it lies among the filemap events in time order and carries the trace's clock::

        tagcache_sample: file=BYTES anon=BYTES usage=BYTES buffers=BYTES

    (in the trace: ``COMM-PID [CPU] FLAGS SECONDS: tracing_mark_write: tagcache_sample:
    ...``). ``file`` is the cgroup's page cache (as ``cache``), ``anon`` its anonymous memory
    (v1 ``rss``, which includes ``rss_huge``; v2 ``anon``), ``usage`` all that is charged to
    it (v1 memory.usage_in_bytes, v2 memory.current: anonymous and kernel memory too), and
    ``buffers`` the growth of /proc/meminfo ``Buffers`` since CMD started (>= 0; see
    ``buffers_growth_peak``), all read in one sample. The ftrace reader turns them into
    Op.CGROUP_SAMPLE rows (file pages, usage - file pages, buffers pages). A model follows
    this series, not one number: what the cgroup charges besides page cache (anonymous
    memory, kernel memory, metadata) at each moment is room the page cache did not have. A
    line lost from a full buffer is counted here but missing from the trace (as
    ``trace_overrun_events`` says).

``folio_orders``: ``{"order": pages}``
    The pages of the cgroup's page cache when CMD has exited, by the order of the folio
    holding them (/proc/kpagecgroup and /proc/kpageflags, see kpageflags.py; left out where
    those cannot be read). Any order above 0 says the traced filesystem gives its files large
    folios (ext4 since Linux 6.16), which ``tagcache validate`` then models: readahead grows
    them, and reclaim activates a mapped one at its first scan (more than one young PTE).

``kernel_release``: ``uname -r``, and ``filesystems``: ``{"M:m": "ext4"}``
    The kernel release and the filesystem type of every traced device that is mounted (from
    /proc/self/mountinfo). A filesystem decides whether its files' mappings support large
    folios when it sets up an inode (ext4 since 6.16, xfs since 5.18), so a model gives large
    folios per file by its device's filesystem (sidecar.large_folio_devices()) rather than
    by what the cgroup held at the end (``folio_orders``, the fallback for older sidecars).

The trace NAME.trace.zst beside it holds, besides the filemap events (and the kmem events with
``--with-alloc``), the command's writes to ext4 files and its deletions of them, where the
kernel has ext4's tracepoints (record/tracefs.py, ``EXT4_EVENTS``): ``ext4_da_write_begin``
and ``ext4_write_begin`` (``dev M,m ino DEC pos BYTES len BYTES``, one per folio-sized chunk a
write copies in) and ``ext4_evict_inode`` (``dev M,m ino DEC nlink N``; nlink 0: the file was
deleted and its page cache is freed). The filemap events show a written page only as the
kernel's insertion, so without these a file the command writes and reads back would look read
from disk. The ftrace reader turns them into Op.WRITE and Op.UNLINK rows of the same file ids
as the filemap events (traces/ftrace.py); captures made before have none.
"""

from __future__ import annotations

import json
from typing import Any

from tagcache.record.util import PAGE_SIZE

SIDECAR_KERNEL_FIELDS = ("workingset_refault_file", "pgmajfault", "pgpgin", "pgpgout", "cache",
                         "inactive_file", "active_file", "cache_peak")


def exit_code(returncode: int) -> int:
    """Shell convention: 128 + N when CMD was killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def kernel_fields(version: int, stat: dict[str, int], vm0: dict[str, int],
                  vm1: dict[str, int], cache_peak: int) -> dict[str, int]:
    """The sidecar's ``kernel`` object from the cgroup's final memory.stat (table above)."""
    def vm_delta(key: str) -> int:
        return max(0, vm1.get(key, 0) - vm0.get(key, 0))

    kib_per_page = PAGE_SIZE // 1024
    if "workingset_refault_file" in stat:
        refault = stat["workingset_refault_file"]
    else:  # v1 memory.stat of kernels before 5.9: the global counter's delta
        refault = vm_delta("workingset_refault_file") or vm_delta("workingset_refault")
    if version == 1:
        pgpgin, pgpgout = stat.get("pgpgin", 0), stat.get("pgpgout", 0)
        cache = stat.get("cache", 0)
    else:  # v2 memory.stat has no charge counters: global block I/O, KiB -> pages
        pgpgin, pgpgout = vm_delta("pgpgin") // kib_per_page, vm_delta("pgpgout") // kib_per_page
        cache = stat.get("file", 0)
    return {
        "workingset_refault_file": int(refault),
        "pgmajfault": int(stat.get("pgmajfault", 0)),
        "pgpgin": int(pgpgin),
        "pgpgout": int(pgpgout),
        "cache": int(cache),
        "inactive_file": int(stat.get("inactive_file", 0)),
        "active_file": int(stat.get("active_file", 0)),
        "cache_peak": int(max(cache_peak, cache)),
    }


def sidecar_json(sidecar: dict[str, Any]) -> str:
    """The sidecar's text: objects one member a line (as ``json.dumps(indent=1)``), lists of
    numbers such as residency runs on one line each."""
    def dump(v: Any, depth: int) -> str:
        if isinstance(v, dict) and v:
            pad = " " * (depth + 1)
            items = ",\n".join(f"{pad}{json.dumps(k)}: {dump(x, depth + 1)}"
                               for k, x in v.items())
            return "{\n" + items + "\n" + " " * depth + "}"
        return json.dumps(v)
    return dump(sidecar, 0) + "\n"
