"""Ready-made rules written in the rule language.

Time constants are in seconds, learning rates per epoch (``t_epoch`` steps).
"""
from __future__ import annotations

import math

from neuro.expr import Param, t, u, w, x0, x1, y0, y1, y2
from neuro.rule import LearningRule, Trace


def _pair_term():
    """The pair-based STDP update: potentiate on post spikes, depress on pre spikes."""
    return Param("a_plus") * y0 * x1 - Param("a_minus") * x0 * y1


def _modulated_traces(tau_plus: float, tau_minus: float) -> dict:
    """Spike traces for the pair term and ``y2`` driven by the post population's third factor."""
    return {"x1": Trace(1.0, tau_plus), "y1": Trace(1.0, tau_minus), "y2": Trace(driven_by="third_factor")}


def stdp(
    a_plus: float = 0.01,
    a_minus: float = 0.0105,
    tau_plus: float = 20e-3,
    tau_minus: float = 20e-3,
    w_min: float = 0.0,
    w_max: float = 1.0,
    multiplicative: bool = False,
    impulse: float = 1.0,
    t_epoch: int = 1,
) -> LearningRule:
    """Pair-based STDP with nearest-neighbour-free (all-to-all) traces.

    On a post spike the weight grows by ``a_plus * x1`` (pre trace, time
    constant ``tau_plus``); on a pre spike it shrinks by ``a_minus * y1`` (post
    trace, ``tau_minus``). ``multiplicative=True`` scales potentiation by
    ``w_max - w`` and depression by ``w - w_min`` (soft bounds, van Rossum 2000);
    either way the weight is clipped to ``[w_min, w_max]``.
    """
    eta_p, eta_m = Param("a_plus"), Param("a_minus")
    if multiplicative:
        if not (math.isfinite(w_min) and math.isfinite(w_max)):
            raise ValueError("multiplicative STDP needs finite w_min and w_max")
        dw = eta_p * y0 * x1 * (w_max - w) - eta_m * x0 * y1 * (w - w_min)
    else:
        dw = _pair_term()
    return LearningRule(
        dw=dw,
        traces={"x1": Trace(impulse, tau_plus), "y1": Trace(impulse, tau_minus)},
        t_epoch=t_epoch,
        w_min=w_min,
        w_max=w_max,
        params={"a_plus": a_plus, "a_minus": a_minus},
        name="stdp_multiplicative" if multiplicative else "stdp_additive",
    )


def reward_modulated_stdp(
    a_plus: float = 0.01,
    a_minus: float = 0.0105,
    tau_plus: float = 20e-3,
    tau_minus: float = 20e-3,
    eligibility_decay: float = 0.05,
    learning_rate: float = 1.0,
    w_min: float = -math.inf,
    w_max: float = math.inf,
    t_epoch: int = 1,
) -> LearningRule:
    """Three-factor rule: STDP fills an eligibility tag ``t``; a reward turns it into weight.

    The tag follows ``dt = a_plus*y0*x1 - a_minus*x0*y1 - eligibility_decay*u*t``
    (so it decays by ``eligibility_decay`` per epoch), and
    ``dw = learning_rate * u * t * y2`` where ``y2`` is driven by the post
    population's external third factor (the reward), as in Lava's
    ``RewardModulatedSTDP``.
    """
    return LearningRule(
        dt=_pair_term() - Param("eligibility_decay") * u * t,
        dw=Param("learning_rate") * u * t * y2,
        traces=_modulated_traces(tau_plus, tau_minus),
        t_epoch=t_epoch,
        w_min=w_min,
        w_max=w_max,
        params={
            "a_plus": a_plus,
            "a_minus": a_minus,
            "eligibility_decay": eligibility_decay,
            "learning_rate": learning_rate,
        },
        name="reward_modulated_stdp",
    )


def modulated_stdp(
    a_plus: float = 0.01,
    a_minus: float = 0.0105,
    tau_plus: float = 20e-3,
    tau_minus: float = 20e-3,
    w_min: float = -math.inf,
    w_max: float = math.inf,
    t_epoch: int = 1,
) -> LearningRule:
    """Three-factor rule without a tag: STDP whose sign and size a third factor ``y2`` sets."""
    return LearningRule(
        dw=_pair_term() * y2,
        traces=_modulated_traces(tau_plus, tau_minus),
        t_epoch=t_epoch,
        w_min=w_min,
        w_max=w_max,
        params={"a_plus": a_plus, "a_minus": a_minus},
        name="modulated_stdp",
    )
