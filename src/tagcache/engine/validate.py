"""The loop of ``tagcache validate``, compiled: a capture's kept events over the flat page cache.

validate.py keeps a capture's access events (get_pages, read, map_pages, fault), the
command's writes and file deletions, the kernel's add and delete events and, where the room
follows them, the cgroup's samples and kmem events. validate_events() walks those columns:

- an access, write or unlink runs through the page cache's step functions (engine/filemap.py;
  an unlink only where the file has a span, as validate.py always did);
- before a fault on a page inside the file's span, the page is classified by whether the
  kernel (``kernel_cached``, from its add and delete events) and the model had it cached
  (``vc[FAULTS + outcome]``, validate.FAULT_OUTCOMES' order); the pages the kernel's add events
  insert into the faulting file before the next access event count under that class
  (``vc[FAULT_PAGES + outcome]``): what the kernel read for the fault;
- an add or delete event sets its pages in ``kernel_cached`` (a diagnostic only: the model
  never reads it);
- a cgroup sample or kmem event is the caller's: the loop returns its index, the caller moves
  the room (capacity.follow_room(), Python) and calls again from the next event.

The classification compares states before the fault runs; nothing here changes what the
model does, so the model's counts are those of engine/filemap.replay_page_cache() on the
same events.
"""

from __future__ import annotations

from numba import njit

from tagcache.engine.filemap import (
    filemap_fault,
    filemap_get_pages,
    filemap_map_pages,
    filemap_read,
    generic_perform_write,
    truncate_inode_pages_range,
)
from tagcache.engine.pagecache import ERROR, ERROR_EVENT
from tagcache.workloads.events import Op

OP_READ, OP_WRITE, OP_FAULT = int(Op.READ), int(Op.WRITE), int(Op.FAULT)
OP_MAP_PAGES, OP_UNLINK, OP_GET_PAGES = int(Op.MAP_PAGES), int(Op.UNLINK), int(Op.GET_PAGES)
OP_KERNEL_ADD, OP_KERNEL_DELETE = int(Op.KERNEL_ADD), int(Op.KERNEL_DELETE)

BOTH_HIT, KERNEL_MISS_MODEL_HIT, KERNEL_HIT_MODEL_MISS, BOTH_MISS = range(4)
"""Fault classes, in validate.FAULT_OUTCOMES' order."""

# -- vc[...]: the loop's counters and the state it carries from one call to the next ----------
FAULTS = 0              # vc[FAULTS + class]: fault events
FAULT_PAGES = 4         # vc[FAULT_PAGES + class]: pages the kernel added after them
OUTCOME = 8             # the last fault's class
FAULT_FILE = 9          # the file of the last fault, until the next access event; -1 none
NR_VC = 10


@njit(cache=True)
def fault_class(kernel: bool, model: bool) -> int:
    """The class of a fault on a page the kernel and the model had cached or not."""
    if kernel == model:
        return BOTH_HIT if model else BOTH_MISS
    return KERNEL_MISS_MODEL_HIT if model else KERNEL_HIT_MODEL_MISS


@njit(cache=True)
def validate_events(pc, op, a0, a1, a2, start, end, kernel_cached, vc):
    """Run the kept events ``[start, end)``; return the index of the first one that is the
    caller's (a cgroup sample, a kmem event, an op validate does not keep), or ``end``. On a
    page-cache error (``pc.c[ERROR]``) the failing event's index is returned and put in
    ``pc.c[ERROR_EVENT]``."""
    nk = len(kernel_cached)
    for i in range(start, end):
        o = op[i]
        x = a0[i]
        y = a1[i]
        if o >= OP_KERNEL_ADD:
            if o != OP_KERNEL_ADD and o != OP_KERNEL_DELETE:
                return i
            if pc.span[x]:
                s = pc.base[x] + y
                nr = 1 << a2[i]
                v = 1 if o == OP_KERNEL_ADD else 0
                for k in range(max(0, s), min(s + nr, nk)):    # a slice's bounds
                    kernel_cached[k] = v
                if v and x == vc[FAULT_FILE]:
                    vc[FAULT_PAGES + vc[OUTCOME]] += nr
            continue
        vc[FAULT_FILE] = -1
        if o == OP_FAULT:
            if y < pc.span[x]:
                s = pc.base[x] + y
                cls = fault_class(kernel_cached[s] != 0, pc.head[s] >= 0)
                vc[FAULTS + cls] += 1
                vc[OUTCOME] = cls
                vc[FAULT_FILE] = x
            filemap_fault(pc, x, y)
        elif o == OP_GET_PAGES:
            filemap_get_pages(pc, x, y, a2[i])
        elif o == OP_READ:
            filemap_read(pc, x, y, a2[i])
        elif o == OP_MAP_PAGES:
            filemap_map_pages(pc, x, y, a2[i])
        elif o == OP_WRITE:
            generic_perform_write(pc, x, y, a2[i])
        elif o == OP_UNLINK:
            if pc.span[x]:
                truncate_inode_pages_range(pc, x, 0)      # the inode evicted
        else:
            return i
        if pc.c[ERROR]:
            pc.c[ERROR_EVENT] = i
            return i
    return end
