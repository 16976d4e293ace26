"""neuro: spiking networks with local plasticity rules written once.

The public API: build a :class:`Network`, attach :class:`LearningRule` s written
with the rule variables (``x0, y0, u, x1, x2, y1, y2, y3, w, t, d``), simulate
with :class:`Simulator` (torch/Norse), save with :func:`save` / :func:`load`.
"""
import warnings

with warnings.catch_warnings():
    # norse 1.1 calls torch.jit.script at import time, which torch 2.14 deprecates.
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
    import norse.torch  # noqa: F401

from neuro.encoders import LatencyEncoder, PoissonEncoder, RegularEncoder
from neuro.engine import Recording, Simulator
from neuro.expr import (
    Const,
    Expr,
    Op,
    Param,
    RuleError,
    Var,
    abs_,
    clamp,
    d,
    exp,
    expr_from_data,
    maximum,
    minimum,
    relu,
    sign,
    softmax,
    sum_pre,
    t,
    u,
    w,
    winner,
    x0,
    x1,
    x2,
    y0,
    y1,
    y2,
    y3,
)
from neuro.graph import InputPopulation, Network, Population, Projection, Tie, random_mask
from neuro.neurons import IAF, LIF
from neuro.rule import LearningRule, Term, Trace, expand_terms
from neuro.io import ModelFileError, describe, load, save
from neuro import standard_rules

__version__ = "0.1.0"
