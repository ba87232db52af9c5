"""Use cases one floor below both the services and the engine: starting an operation
(start.py), its typed params (params.py), and starting an upgrade (upgrades.py)."""
