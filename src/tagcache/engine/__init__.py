"""The engine (issue 11): one flat machine state in arrays and step functions compiled with
numba, named after the kernel's. machine.py builds and runs it; the page cache is
pagecache.py, filemap.py, filemap_add.py, readahead.py and vmscan.py (the kernel's) or lru.py
(the plain LRU); cleancache.py and tagstore.py the cleancache frontend and the tag-storage
backend; tags.py tag-storage reservation and the MTE hooks; page_alloc.py and anon.py page
frames and anonymous memory; checker.py the invariants (rules.py). The constants they share
that need no compiler (page_flags.py, mmzone.py, pagemap.py, choices.py, rules.py) are
imported by the rest of tagcache without loading numba."""
