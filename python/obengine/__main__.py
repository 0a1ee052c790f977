"""``python -m obengine``: the same command line as ``obengine`` (see :mod:`obengine.cli`)."""
from obengine.cli import main

raise SystemExit(main())
