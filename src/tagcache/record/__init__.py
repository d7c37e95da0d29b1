"""``tagcache record``: capture the real kernel's page cache under a memory limit (DESIGN.md 5).

A capture runs CMD in a fresh memory cgroup with the given limit and records the filemap
tracepoints (and, with ``with_alloc``, kmem page alloc/free) of CMD and every process it forks,
in a tracefs instance of its own. It writes NAME.trace.zst (the raw tracefs ``trace`` text,
zstd) and NAME.json (the sidecar, schema.py), both or neither.

Every change to the machine is a context manager on one ExitStack (run.py), entered in this
order and undone in reverse on any way out: return, exception, or a signal. Each is written to
the state file (state.py) before it is made and dropped from it once undone, so a recorder
killed with SIGKILL is undone by the next one (recover.py)::

    checks: name, sizes, CMD, root, outputs,    CaptureError / OutputError, nothing changed
      tracefs and events, cgroup hierarchy
    signals.Signals       INT TERM HUP QUIT held      handlers back; a held signal delivered
                                                      again once they are
      recover.recover()   undo every dead recorder's state file; one line each
      state.StateFile     /run/tagcache/record-PID-START.json     removed (kept if an undo
                                                                  failed: CaptureError)
        cgroup.MemoryCgroup    mkdir, limit                  tasks left to root, rmdir
          tracefs.TraceInstance  mkdir, buffer, event-fork,  events off, rmdir
                                 events on, tracing off
            readahead.ReadAhead  every bdi's read_ahead_kb   old values back where still ours
              (--read-ahead only)
              sync; drop_caches; read read_ahead_kb; resident_at_start (residency.py)
              sampling.Sampler   first sample; trace_marker  trace_marker closed
                                 opened
              command.Command    fork; the child joins the   SIGTERM, then SIGKILL
                                 cgroup, sets set_event_pid
                                 and tracing_on, writes the
                                 first sample; exec CMD
                sampling.Sampler.watch(): memory.stat, usage, Buffers, /proc/PID/maps every
                  sample_interval until CMD exits, and once after (signals forwarded to
                  CMD); each sample a trace_marker line
              tracing off; memory.stat; folio sizes (kpageflags.py)
              files.CaptureFiles  temporaries of both outputs  both removed unless committed
                stream ``trace`` -> NAME.trace.zst, sidecar -> NAME.json; commit: rename both

Only CMD's processes are recorded: CMD's pid goes into the instance's ``set_event_pid`` and
event-fork adds every task it forks (threads included). Reclaim by kswapd or other cgroups'
tasks is therefore not in the capture; the limit makes CMD reclaim its own pages (direct
reclaim runs in CMD's tasks), so its evictions are recorded. The top-level tracing state is
never written.
"""

from tagcache.record.cgroup import find_memory_cgroup
from tagcache.record.mappings import ExecMappings, elf_writable_pages, exec_maps, parse_maps
from tagcache.record.readahead import bdi_read_ahead_kb
from tagcache.record.recover import live_recorders, recover
from tagcache.record.residency import resident_at_start, resident_runs
from tagcache.record.run import DEFAULT_BUFFER_BYTES, CaptureResult, record
from tagcache.record.schema import SIDECAR_KERNEL_FIELDS, sidecar_json
from tagcache.record.state import STATE_DIR
from tagcache.record.tracefs import FILEMAP_EVENTS, KMEM_EVENTS, find_tracefs
from tagcache.record.util import PAGE_SIZE, PREFIX

__all__ = ["DEFAULT_BUFFER_BYTES", "FILEMAP_EVENTS", "KMEM_EVENTS", "PAGE_SIZE", "PREFIX",
           "SIDECAR_KERNEL_FIELDS", "STATE_DIR", "CaptureResult", "ExecMappings",
           "bdi_read_ahead_kb", "elf_writable_pages", "exec_maps", "find_memory_cgroup",
           "find_tracefs", "live_recorders", "parse_maps", "record", "recover",
           "resident_at_start", "resident_runs", "sidecar_json"]
