"""Lava processes of our own. They live in their own folder because Lava's compiler imports every
module beside a process's file when it searches for that process's models."""
from export.lava_procs.bounded_lif import BoundedLIF
from export.lava_procs.factor_lif import FactorLIF

__all__ = ["BoundedLIF", "FactorLIF"]
