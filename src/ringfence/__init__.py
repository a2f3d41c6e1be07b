"""ringfence: a resilience control plane for critical IT estates.

Know what depends on what and on whom, stage every change, prove you can undo it, rehearse, and recover
in the right order.
"""

__version__ = "0.1.0"
