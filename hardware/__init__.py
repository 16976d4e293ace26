"""What a target chip can do: target descriptions, quantization, mapping and fit checks.

Builds on :mod:`neuro` only (never the other way round).
"""
