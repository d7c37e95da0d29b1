"""The compiled engine (issue 11): flat machine state in arrays and step functions compiled
with numba, named after the kernel's. Its first part is the plain-LRU page cache (lru.py),
which ``replay()`` uses for ``--policy lru`` runs with no cleancache backend and no checker;
everything else still runs on the object model of mm/, which it reproduces exactly."""
