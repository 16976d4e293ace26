"""A Lava LIF process with the dynamics :meth:`neuro.LIF.beyond_lava` names: a saturating current
(``i_min`` / ``i_max``), a gated input (``gate_min`` / ``gate_max``), a subtractive reset, a membrane
floor (``v_min``), a current that decays on one side of 0 only (``syn_leak``).

Lava's ``LIF`` integrates ``u <- u (1 - du) + a_in`` without bounds (its fixed-point model
saturates only at the 24-bit range). :class:`BoundedLIF` adds the input of a second port,
``a_gated``, only where the current ``u (1 - du)`` lies inside ``(g_min, g_max)``, and clips ``u``
to ``[u_min, u_max]`` right after the input is added, before ``v`` integrates it, and (with
``subtract_reset``) lowers ``v`` by ``vth`` on a spike instead of setting it to 0, and keeps ``v``
at or above ``v_min``, and decays ``u`` only on the ``syn_leak`` side of 0, as the torch engine does. Floating point only: on Loihi 2 each needs a custom neuron program.
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.process.ports.ports import InPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import AbstractPyLifModelFloat
from lava.proc.lif.process import LIF


def custom_params(u_min: float = -np.inf, u_max: float = np.inf, g_min: float = -np.inf, g_max: float = np.inf,
                  subtract_reset: bool = False, v_min: float = -np.inf, syn_leak: str = "both") -> dict:
    """The process parameters of :class:`CustomLifFloat` (defaults: Lava's own LIF dynamics; ``v_min`` in
    Lava's voltage units)."""
    return dict(u_min=float(u_min), u_max=float(u_max), g_min=float(g_min), g_max=float(g_max),
                subtract_reset=bool(subtract_reset), v_min=float(v_min), syn_leak=str(syn_leak))


def decay_factor(u: np.ndarray, du: float, syn_leak: str = "both") -> np.ndarray:
    """What Lava's current ``u`` (before this step's decay) is multiplied by as it decays: ``1 - du``,
    or 1 where ``syn_leak`` holds it (``"positive"``: decays only while positive, ``"negative"``: only
    while negative, ``"none"``: never; :class:`neuro.LIF`). Also ours (after the decay) over Lava's, as
    ``u`` and ours share their sign."""
    if syn_leak == "both":
        return np.full(np.shape(u), 1.0 - du)
    if syn_leak == "none":
        return np.ones(np.shape(u))
    held = np.asarray(u) <= 0 if syn_leak == "positive" else np.asarray(u) >= 0
    return np.where(held, 1.0, 1.0 - du)


class BoundedLIF(LIF):
    """``LIF`` whose current ``u`` stays in ``[u_min, u_max]``, whose ``a_gated`` input passes where
    ``u (1 - du)`` lies in ``(g_min, g_max)`` (numbers; ``-inf`` / ``inf``: no bound, no gate), that
    resets by subtracting ``vth`` when ``subtract_reset``, whose ``v`` stays at or above ``v_min`` and
    whose ``u`` decays only on the ``syn_leak`` side of 0 (``"both"``: Lava's LIF)."""

    def __init__(self, *, u_min: float = -np.inf, u_max: float = np.inf, g_min: float = -np.inf,
                 g_max: float = np.inf, subtract_reset: bool = False, v_min: float = -np.inf,
                 syn_leak: str = "both", **kwargs) -> None:
        super().__init__(**custom_params(u_min, u_max, g_min, g_max, subtract_reset, v_min, syn_leak), **kwargs)
        self.a_gated = InPort(shape=self.a_in.shape)


class CustomLifFloat:
    """The floating-point dynamics shared by our LIF processes (:class:`BoundedLIF`, ``FactorLIF``):
    a gated second input, a saturating current, a subtractive reset, a floor of the membrane. Mixed in before Lava's LIF model;
    the process carries :func:`custom_params` and an ``a_gated`` in-port."""

    def reset_voltage(self, spike_vector: np.ndarray) -> None:
        if self.proc_params["subtract_reset"]:
            self.v[spike_vector] -= self.vth
        else:
            self.v[spike_vector] = 0

    def subthr_dynamics(self, activation_in: np.ndarray) -> None:
        p = self.proc_params
        decayed = self.u * decay_factor(self.u, self.du, p["syn_leak"])
        gated = self.a_gated.recv()
        open_ = (decayed > p["g_min"]) & (decayed < p["g_max"])
        self.u[:] = np.clip(decayed + activation_in + np.where(open_, gated, 0.0), p["u_min"], p["u_max"])
        self.v[:] = np.maximum(self.v * (1 - self.dv) + self.u + self.bias_mant, p["v_min"])


@implements(proc=BoundedLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyBoundedLIFModelFloat(CustomLifFloat, AbstractPyLifModelFloat):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    a_gated: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    vth: float = LavaPyType(float, float)

    def spiking_activation(self):
        return self.v > self.vth
