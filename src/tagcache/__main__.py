"""python -m tagcache: the command line."""

from tagcache.cli import main

raise SystemExit(main())
