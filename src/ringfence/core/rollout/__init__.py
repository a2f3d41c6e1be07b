"""Safe rollouts: the state machine (``state``), ring planning, health gates and the reconcile loop.

The modules here are domain core: pure, no I/O. Persistence lives in ``ringfence.store``.
"""
