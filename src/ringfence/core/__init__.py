"""The core: the model, the graph, planning, gates, the rollout state machine, reconcile, the guard, drills.

Pure: no module here imports an adapter or an I/O library (tests/test_layers.py). Clocks and drivers are handed in."""
