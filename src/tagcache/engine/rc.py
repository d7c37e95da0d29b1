"""Return codes of the compiled memory step functions (tags.py, page_alloc.py, anon.py).

Step functions return these instead of raising: OUT_OF_MEMORY (replay counts it in
``oom_events`` and goes on), ERR_* (machine.py raises ValueError for bad input, which stops the
run, or RuntimeError for a broken invariant).
NEED_ROOM is no error: an anonymous-memory operation asks its caller to reclaim page cache
first (anon.py says how), then to call it again.
"""

OK = 0
NEED_ROOM = 1           # call the page cache's reclaim for c[ROOM_WANTED] frames, then again
OUT_OF_MEMORY = 2       # nothing was taken
ERR_UNTAGGABLE = 3      # ValueError: a PFN no tag region covers (or outside the memmap)
ERR_NOT_WHOLE = 4       # ValueError: pages not a whole number of order-N blocks
ERR_BAD_ARG = 5         # a negative page count or process id
ERR_DOUBLE_FREE = 6     # AssertionError: a free frame freed again

NAMES = {OK: "ok", NEED_ROOM: "need room", OUT_OF_MEMORY: "out of memory",
         ERR_UNTAGGABLE: "PFN outside the modelled tagged memory",
         ERR_NOT_WHOLE: "not a whole number of blocks",
         ERR_BAD_ARG: "negative page count or process id",
         ERR_DOUBLE_FREE: "double free of a page frame"}
