"""Lava objects for a rule lowered by :mod:`hardware.loihi_rules`: ``Loihi2FLearningRule`` / ``Loihi3FLearningRule``.

The lowering itself (which products Loihi 2's learning engine can run, exactly,
and the errors for those it cannot) is target knowledge and lives in
``hardware/``; this module only builds Lava's objects from it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from hardware.loihi_rules import (
    LoihiLoweringError,
    LoihiProduct,
    format_products,
    impulse_errors,
    lower_products,
    needs_post_factors,
    to_loihi_strings,
    weight_sign_mode,
)
from neuro.expr import POST_TRACES, PRE_TRACES
from neuro.rule import LearningRule


@dataclass(frozen=True)
class PostTrace:
    """A post trace the post neuron must send on the 3-factor path.

    ``driven_by`` is ``"v"``, ``"i"`` or ``"third_factor"`` for a driven trace; for a
    spike-counting trace it is ``None`` and the neuron keeps the trace itself
    (``y += impulse`` on a spike, ``y *= exp(-1 / tau_steps)`` per step).
    """

    name: str
    driven_by: Optional[str] = None
    impulse: float = 0.0
    tau_steps: float = math.inf


@dataclass(frozen=True)
class LoihiRule:
    """A rule lowered for Lava: pass ``rule`` and ``sign_mode`` to ``LearningDense``.

    Attributes:
        rule: ``Loihi2FLearningRule``, or ``Loihi3FLearningRule`` when ``three_factor``.
        sign_mode: ``lava.utils.weightutils.SignMode`` (MIXED, EXCITATORY or INHIBITORY).
        strings: the ``dw``/``dt``/``dd`` strings given to Lava.
        three_factor: the post neuron must send y1..y3 to the connection's
            ``s_in_y1``..``s_in_y3`` ports (see ``post_traces``).
        post_traces: on the 3-factor path, what the post neuron must send, by trace name.
        products: the exact products behind ``strings``.
    """

    rule: Any
    sign_mode: Any
    strings: Dict[str, str]
    three_factor: bool = False
    post_traces: Dict[str, PostTrace] = field(default_factory=dict)
    products: Dict[str, Tuple[LoihiProduct, ...]] = field(default_factory=dict)

    def dense_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments for ``lava.proc.dense.process.LearningDense``."""
        return {"learning_rule": self.rule, "sign_mode": self.sign_mode}


def to_loihi_rule(rule: LearningRule, dt: float) -> LoihiRule:
    """Lower ``rule`` for Lava with a simulation step of ``dt`` seconds.

    Trace taus become steps (``tau / dt``; ``inf`` stays ``inf``), impulses are kept,
    ``t_epoch`` is in steps already, and the weight bounds become Lava's sign mode.
    Raises :class:`LoihiLoweringError` for anything the learning engine cannot do exactly.
    """
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not (dt > 0 and math.isfinite(dt)):
        raise ValueError(f"dt must be a positive number of seconds, got {dt!r}")
    mode = weight_sign_mode(rule)
    for error in impulse_errors(rule):
        raise error
    products = lower_products(rule)
    three_factor = needs_post_factors(rule)
    strings = {k: format_products(v, rule.u_exponent) for k, v in products.items()}

    from lava.magma.core.learning.learning_rule import Loihi2FLearningRule, Loihi3FLearningRule
    from lava.utils.weightutils import SignMode

    def steps(tau: float) -> float:
        return math.inf if tau == math.inf else tau / dt

    kwargs: Dict[str, Any] = dict(strings)
    kwargs["t_epoch"] = rule.t_epoch
    post: Dict[str, PostTrace] = {}
    for name in PRE_TRACES:
        tr = rule.traces.get(name)
        if tr is not None:
            kwargs[f"{name}_impulse"], kwargs[f"{name}_tau"] = tr.impulse, steps(tr.tau)
    if three_factor:
        lava_rule = Loihi3FLearningRule(**kwargs)
        for name in POST_TRACES:
            # The neuron sends the value every step; hold it through the epoch (no decay).
            setattr(lava_rule, f"{name}_tau", math.inf)
            tr = rule.traces.get(name)
            if tr is not None and rule.uses(name):
                post[name] = (
                    PostTrace(name, tr.driven_by)
                    if tr.driven_by
                    else PostTrace(name, None, tr.impulse, steps(tr.tau))
                )
    else:
        for name in POST_TRACES:
            tr = rule.traces.get(name)
            if tr is not None:
                kwargs[f"{name}_impulse"], kwargs[f"{name}_tau"] = tr.impulse, steps(tr.tau)
        lava_rule = Loihi2FLearningRule(**kwargs)
    sign_mode = {"mixed": SignMode.MIXED, "excitatory": SignMode.EXCITATORY, "inhibitory": SignMode.INHIBITORY}[mode]
    return LoihiRule(lava_rule, sign_mode, strings, three_factor, post, products)


__all__ = ["LoihiLoweringError", "LoihiRule", "PostTrace", "to_loihi_rule", "to_loihi_strings"]
