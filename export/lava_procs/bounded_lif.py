"""A Lava LIF process whose current saturates: :class:`neuro.LIF` with finite ``i_min`` / ``i_max``.

Lava's ``LIF`` integrates ``u <- u (1 - du) + a_in`` without bounds (its fixed-point model
saturates only at the 24-bit range). :class:`BoundedLIF` clips ``u`` to ``[u_min, u_max]``
right after the input is added, before ``v`` integrates it, as the torch engine does.
Floating point only: on Loihi 2 a bound needs a custom neuron program.
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import AbstractPyLifModelFloat
from lava.proc.lif.process import LIF


class BoundedLIF(LIF):
    """``LIF`` whose current ``u`` stays in ``[u_min, u_max]`` (numbers; ``-inf`` / ``inf``: no bound)."""

    def __init__(self, *, u_min: float, u_max: float, **kwargs) -> None:
        super().__init__(u_min=float(u_min), u_max=float(u_max), **kwargs)


@implements(proc=BoundedLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyBoundedLIFModelFloat(AbstractPyLifModelFloat):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    vth: float = LavaPyType(float, float)

    def spiking_activation(self):
        return self.v > self.vth

    def subthr_dynamics(self, activation_in: np.ndarray) -> None:
        self.u[:] = np.clip(self.u * (1 - self.du) + activation_in, self.proc_params["u_min"], self.proc_params["u_max"])
        self.v[:] = self.v * (1 - self.dv) + self.u + self.bias_mant
