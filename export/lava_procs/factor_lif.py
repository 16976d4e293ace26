"""A Lava LIF process that delivers post-synaptic factors (y1, y2, y3) to three-factor learning.

Lava 0.10's ``LearningLIF`` models never send on their ``s_out_bap`` /
``s_out_y*`` ports, so a ``LearningDense`` with a ``Loihi3FLearningRule`` would
wait forever. :class:`FactorLIF` is a ``LearningLIF`` whose model, after the
usual LIF step, sends the back-propagating spikes and, per post trace, either

* a driven value (``"v"``: membrane potential, ``"i"``: synaptic current,
  ``"third_factor"``: the graded input on ``a_third_factor_in``), in the units
  of the torch engine, or
* a spike trace ``y <- y * decay + impulse * spike`` (exact for one-step
  learning epochs, where Loihi samples post traces at the epoch's end).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.neuron import LearningNeuronModelFixed, LearningNeuronModelFloat
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.process.ports.ports import InPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import AbstractPyLifModelFixed, AbstractPyLifModelFloat
from lava.proc.lif.process import LearningLIF

from export.lava_procs.bounded_lif import CustomLifFloat, custom_params, decay_factor

# Per post trace: ("driven", driver) or ("spike", decay per step, impulse) or None.
TraceSpec = Optional[Tuple]


class FactorLIF(LearningLIF):
    """``LearningLIF`` plus the description of what to send as y1, y2, y3.

    Parameters (besides ``LearningLIF``'s):
        traces: ``{"y1": spec, "y2": spec, "y3": spec}`` (see the module docstring).
        v_scale: engine voltage per Lava voltage (``dv`` for LIF, 1 for IAF).
        third_factor: whether ``a_third_factor_in`` is connected.
        custom: :func:`~export.lava_procs.bounded_lif.custom_params` (bounds, gate, subtractive
            reset, membrane floor; floating point only), as :class:`~export.lava_procs.BoundedLIF` has them.
    """

    def __init__(self, *, traces: Dict[str, TraceSpec], v_scale: float, third_factor: bool,
                 custom: Optional[dict] = None, **kwargs) -> None:
        super().__init__(traces=traces, v_scale=v_scale, third_factor=third_factor,
                         **custom_params(**(custom or {})), **kwargs)
        self.a_gated = InPort(shape=self.a_in.shape)


@implements(proc=FactorLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyFactorLIFModelFloat(CustomLifFloat, LearningNeuronModelFloat, AbstractPyLifModelFloat):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    a_gated: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    vth: float = LavaPyType(float, float)

    def spiking_activation(self):
        return self.v > self.vth

    def run_spk(self) -> None:
        super().run_spk()  # LIF step: receive a_in, integrate, spike, reset, send s_out
        spikes = np.asarray(self.s_out_buff, dtype=bool)
        params = self.proc_params
        signals = {
            "v": self.v * params["v_scale"],
            # The engine reports the current after this step's decay; Lava's u is before it.
            "i": self.u * decay_factor(self.u, self.du, params["syn_leak"]),
        }
        if params["third_factor"]:
            signals["third_factor"] = np.asarray(self.a_third_factor_in.recv(), dtype=float)
        for name in ("y1", "y2", "y3"):
            spec = params["traces"].get(name)
            if spec is None:
                continue
            if spec[0] == "driven":
                value = np.broadcast_to(signals[spec[1]], self.v.shape).astype(float)
            else:
                _, decay, impulse = spec
                value = getattr(self, name) * decay + impulse * spikes
            setattr(self, name, value)
        self.s_out_bap.send(spikes)
        self.s_out_y1.send(self.y1)
        self.s_out_y2.send(self.y2)
        self.s_out_y3.send(self.y3)


@implements(proc=FactorLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFactorLIFModelFixed(LearningNeuronModelFixed, AbstractPyLifModelFixed):
    """``fixed_pt``: Lava's bit-accurate LIF (as ``PyLearningLIFModelFixed``) that then sends
    ``s_out_bap`` and integer y1..y3 (the 7-bit ``s_out_y*`` ports). ``traces`` specs, as
    ``hardware.fixed_point`` compiles them (``FixedPointLearning.post_traces``):

    * ``("driven", "third_factor")``: the integer on ``a_third_factor_in`` (already scaled by
      ``FixedPointPopulation.third_factor_integers``), sent as is;
    * ``("spike", keep, impulse)``: ``y = clip(((y * keep) >> 12) + impulse * spike, 0, 127)``.
    """

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_gated: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)  # unused: fixed_pt refuses gates
    vth: int = LavaPyType(int, np.int32, precision=17)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.effective_vth = 0

    def scale_threshold(self):
        self.effective_vth = np.left_shift(self.vth, self.vth_shift)
        self.isthrscaled = True

    def spiking_activation(self):
        return self.v > self.effective_vth

    def run_spk(self) -> None:
        super().run_spk()  # bit-accurate LIF step: receive a_in, integrate, spike, reset, send s_out
        spikes = np.asarray(self.s_out_buff, dtype=bool)
        params = self.proc_params
        third = None
        if params["third_factor"]:
            third = np.asarray(self.a_third_factor_in.recv()).astype(np.int64)
        for name in ("y1", "y2", "y3"):
            spec = params["traces"].get(name)
            if spec is None:
                continue
            if spec[0] == "driven":
                if spec[1] != "third_factor":
                    raise ValueError(f"fixed_pt FactorLIF drives {name} only by 'third_factor', got {spec[1]!r}")
                value = np.broadcast_to(third, self.v.shape)
            elif spec[0] == "spike":
                _, keep, impulse = spec
                y = np.asarray(getattr(self, name)).astype(np.int64)
                value = np.clip(np.right_shift(y * int(keep), 12) + int(impulse) * spikes, 0, 127)
            else:
                raise ValueError(f"fixed_pt FactorLIF: unknown trace spec {spec!r} for {name}")
            setattr(self, name, np.asarray(value, dtype=np.int32).copy())
        self.s_out_bap.send(spikes)
        self.s_out_y1.send(self.y1)
        self.s_out_y2.send(self.y2)
        self.s_out_y3.send(self.y3)
