"""What a target chip can do: target descriptions, quantization, mapping and fit checks.

* :mod:`hardware.targets`: :data:`LOIHI2` and :data:`FLOAT_TARGET`, every figure with its source;
* :mod:`hardware.quantize`: weights and LIF parameters in Lava's fixed-point formats;
* :mod:`hardware.mapping`: populations onto cores, synaptic memory, activity and energy formulas;
* :mod:`hardware.check`: :func:`check` -> :class:`FitReport` (``fits``, ``reasons``, ``summary()``);
* :mod:`hardware.cli`: the ``neuro check`` command.

Builds on :mod:`neuro` only (never the other way round).
"""
from hardware.check import FitReport, check
from hardware.mapping import rates_from_spikes
from hardware.quantize import QuantizedWeights, SignMode, lif_fixed_point, population_scale, quantize_weights
from hardware.targets import FLOAT_TARGET, LOIHI2, TARGETS, Figure, Target, get_target

__all__ = [
    "check",
    "FitReport",
    "rates_from_spikes",
    "quantize_weights",
    "QuantizedWeights",
    "SignMode",
    "lif_fixed_point",
    "population_scale",
    "Target",
    "Figure",
    "LOIHI2",
    "FLOAT_TARGET",
    "TARGETS",
    "get_target",
]
