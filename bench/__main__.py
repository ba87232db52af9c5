"""`python -m bench`: every figure of the performance table in one run (see bench/runner.py)."""

from bench.runner import main

raise SystemExit(main())
