"""Spiking predictive coding: value and error units that talk in spikes, signed values and errors in pairs.

The rate network of :mod:`networks.pc` made of spiking neurons (``dt`` steps, the torch engine):

* value units in pairs ``x<l>`` / ``x<l>m`` (hidden layers): LIF neurons whose synaptic current
  ``i`` *is* the value ``x`` (``x<l>m``: ``-x``), bounded to [-1, 1] (``i_min``/``i_max``; a
  near-perfect integrator, ``tau_value``). A unit fires ``rate`` spikes per step per unit of its
  current's positive part, exactly on average (``subtract_reset``: the membrane keeps what exceeded
  the threshold), so ``x<l>`` sends ``f(x) = clip(x, 0, 1)`` up to the next prediction and the pair
  together send the signed value to the layer's own errors: errors compare *values*, as in the rate
  network, and vanish when a value reaches its prediction wherever that lies. (A unit's membrane also
  integrates a negative current, so after its value changes sign a half first makes up that balance:
  a lag, rare here as the gated feedback leaves inactive values at their predictions. A floor,
  ``LIF(v_min=0)`` on value and error units, removes it, but together with ``tau_value`` = 100 s it
  measured worse: digits 0.78 against 0.93, MNIST-5k 0.87 against 0.89, energy peak 27 against 2);
* error units in pairs ``e<l>p`` / ``e<l>n``: the same input with opposite signs,
  ``+-(x_l - W_l f(x_{l-1}) - b_l)`` per step, so their currents are ``+-e_l`` times
  :attr:`SpikingPCConfig.current_gain` and their spikes carry the two halves: the membrane
  (``tau_mem`` = 1 s, reset by subtraction) integrates the current, so a unit's spike count follows
  the integral of its error's positive part, after it has made up what it integrated while the
  error had the other sign (a lag, not a loss). A signed error thus travels as non-negative spikes;
* inference: each error spike moves the values by ``feedback``: ``e<l>n -> x<l>`` (+),
  ``e<l>p -> x<l>`` (-), mirrored onto ``x<l>m``, and from the layer above ``W^T`` through
  projections *tied* to the predictions (:class:`neuro.Tie`) and *gated* by the value unit
  (``gated=True``, gate (0, 1) on ``x<l>``, (-1, 0) on ``x<l>m``): the ``f'(x_l)`` of the rate
  network's ``x_l += gamma (-e_l + f'(x_l) W^T e_{l+1})``, so the values descend the energy
  ``1/2 sum ||e_l||^2``;
* learning: :func:`networks.pc.pc_rule` (``-eta * u * y2 * x1``) on both copies of each prediction,
  ``y2`` the error unit's current (its graded error), ``x1`` the pre value unit's spike trace,
  applied once per presented sample (``u`` is 1 every ``steps = 2**k`` steps: ``u_exponent = k``).
  The two copies receive opposite errors and opposite weights, so they learn the same ``dW`` and
  stay exact negatives (in floating point; Loihi's stochastic rounding of the two updates would
  let them drift apart by a least significant bit at a time).

Supervised use: the image drives ``x0`` (rate-coded spikes), the label drives the top value ``y``
(an input population: clamped), the hidden values start each presentation at 0 (or at the
feed-forward prediction, as the rate network's inference does: :attr:`SpikingPCConfig.start`; on a
chip, the initial state written to the value units before the presentation), and the prediction of a
test image is read with the label silent and the top error's feedback cut (the top is free, as in the
rate network): the class whose ``e<L>n`` minus ``e<L>p`` spike count (``[mu]+`` minus ``[-mu]+``)
over the second half of the presentation is largest.

Saturating currents, gated inputs and the subtractive reset are beyond Lava's (and Loihi 2's
standard) LIF: ``export.lava`` simulates them in floating point (``BoundedLIF``) and
``neuro check`` names each as needing a custom neuron program.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from tqdm.auto import tqdm

from neuro import LIF, Network, Recording, RegularEncoder, Simulator
from networks.checks import check_dataset, check_images, check_int, check_number, check_widths, is_int
from networks.pc import pc_rule


@dataclass(frozen=True)
class SpikingPCConfig:
    """A spiking predictive-coding MLP and its training.

    Attributes:
        hidden: widths of the hidden value layers.
        steps: simulation steps a training sample is shown, label clamped: a power of two, as the
            rule is applied at the last one only (``u_exponent = log2(steps)``, Loihi's ``u<k>``). 256 on
            MNIST-5k, seeds 0 and 1: 0.884, 0.910, against 0.892, 0.903 at 128 (no gain, twice the time).
        test_steps: steps a test sample is shown (label silent, top free).
        eta: learning rate in the rate network's units (per sample; the batch mean is applied).
        batch: samples simulated at once (replicas); their updates are summed like a mini-batch.
        epochs: passes over the training images.
        layer_eta: per-layer factors on ``eta``, one per weight layer from the input up (``W1``/``B1``
            first); ``()``: 1 for every layer. Without the leak the top layer moves about twice as far
            per batch and accuracy jumps, so a slower top layer was measured: ``(1.0, 0.5)`` on MNIST-5k,
            seeds 0-9: mean 0.8985 (sd 0.0048), against 0.8977 with ``()``; the paired difference,
            +0.0008, is within its standard error (0.0018), so it is not the default. ``(1.4, 0.5)``,
            seeds 0-3: mean 0.898 (0.9018 with ``(1.0, 0.5)``).
        eta_final: the learning rate in the last epoch as a fraction of ``eta``; it falls linearly from
            ``eta`` over the epochs (1: constant).
        tune_fraction: the last ``floor(tune_fraction * epochs)`` epochs (:attr:`tune_epochs`; 3 of 10) are a
            fine-tuning phase: ``eta`` times ``tune_eta`` (on top of ``eta_final``'s fall) and, unless
            ``tune_tau_value`` is None, the values leaking with that time constant. 0: no such phase. On Lava
            or Loihi this is the host writing the learning rate (and the value compartments' ``du``) between
            epochs; the exporters take the graph, i.e. the first phase. At the full rate the test accuracy
            stops rising after ~4 epochs and scatters by about a point from epoch to epoch; the lower rate at
            the end settles it. MNIST-5k, the last 3 of 10 epochs at 0.3, seeds 0-9: 0.896, 0.906, 0.902,
            0.905, 0.901, 0.903, 0.898, 0.895, 0.890, 0.904 (mean 0.900) against 0.892, 0.903, 0.902, 0.901,
            0.899, 0.901, 0.899, 0.890, 0.891, 0.899 (mean 0.8977) without (digits, seed 0: 0.939 either way);
            the default since 2026-12-07.
        tune_eta: the learning rate in the fine-tuning epochs as a fraction of ``eta``.
        tune_tau_value: ``tau_value`` (s, longer than ``dt``) in the fine-tuning epochs; None: unchanged.
            Without the leak in those epochs (100 s), MNIST-5k seeds 1-4: 0.909, 0.902, 0.903, 0.901, the same
            as with it.
        rate: spikes per step of an activity of 1 (inputs, label and value units alike).
        feedback: change of a value unit's current per error spike (per step).
        error_gain: error spikes per step per unit error.
        tau_error: time constant of the error units' currents (s, longer than ``dt``): the window of the
            error estimate.
        tau_value: time constant of the value units' currents (s, longer than ``dt``): long, near-perfect
            integrators. The (positive) values decay by ``dt / tau_value`` a step, which a standing error of ``dt /
            (tau_value * feedback)`` times the value makes up (2 % at 2 s). Longer is not better: without
            the leak learning is unstable at ``eta`` 0.1 (100 s: MNIST-5k 0.854; 5 s unstable as well).
        tau_trace: time constant of the pre-synaptic spike trace ``x1`` (s).
        trace_impulse: jump of ``x1`` per spike (a smaller one moves the rule's small learning rate
            into the trace, where Loihi's coefficient range ``m * 2^e``, ``e >= -7``, needs it).
        start: where the hidden values start each presentation: ``"zero"``, at 0, so they first settle
            onto the prediction (a time constant of ~40 steps at ``feedback`` 0.025); ``"forward"``, at the
            feed-forward prediction ``clip(W_l f(x_{l-1}) + b_l, -1, 1)`` with the current weights, as the
            rate network's inference does (every error below the top starts at 0). Measured on MNIST-5k
            (10 epochs): zero 0.892, forward 0.869: the values settled further learn worse, as with 256
            steps a sample (0.845).
        error_floor: error units' membranes have a floor at 0 (``LIF(v_min=0)``): a unit of the pair
            fires at the positive part of its error now, instead of first making up what it integrated
            while the error had the other sign. MNIST-5k (10 epochs, two-sided 1 s leak, five seeds):
            mean 0.896, against 0.892 without (seed 0).
        value_floor: value units' membranes have a floor at 0: a half of a value pair fires at its
            current's positive part as soon as the value has its sign, without first making up the
            negative balance it integrated while the value had the other sign. MNIST-5k with
            ``error_floor``: 0.887, against 0.896 without it.
        value_leak: which values decay with ``tau_value``: ``"both"`` signs, or only ``"positive"`` ones
            (``LIF(syn_leak=...)``: ``"positive"`` on ``x<l>``, ``"negative"`` on its mirror), so an
            inactive (negative) value settles exactly onto its prediction, as in the rate network, while
            the active ones keep the leak. MNIST-5k with ``error_floor``: 0.844 against 0.809 after one
            epoch, but 0.891 and 0.898 after ten (seeds 0, 1), against 0.896 and 0.899 with ``"both"``.
            With ``tau_value`` 2 s as well (the defaults), seeds 0-3: 0.892, 0.903, 0.902, 0.901 (mean
            0.8995), against 0.896, 0.899, 0.897, 0.895 for ``"both"`` at 1 s; seeds 0-9: mean 0.8977.
        leak_free_steps: the last steps of each clamped (training) presentation during which no value
            leaks (``LIF(syn_leak="none")`` swapped in with ``Simulator.set_model``): the leak keeps learning
            stable while the values settle, and the standing error of ``dt / (tau_value * feedback)`` times
            each value it leaves fades before the rule reads the errors at the last step (a settling time
            constant of ~40 steps). 0: the values leak throughout. Test presentations leak throughout. On
            Lava or Loihi this is the host setting the value compartments' ``du`` to 0 between two runs of
            a presentation; the exporters take the graph, whose values leak. With a strong leak (0.2 s)
            the last 64 steps bring the values more than halfway to where a network without the leak
            holds them, but MNIST-5k with 48 (seeds 0-3): 0.890, 0.901, 0.893, 0.901 (mean 0.896),
            against 0.892, 0.903, 0.902, 0.901 with 0 (mean 0.8995): no gain, so it is not the default.
        dt: simulation step (s).
        seed: initial weights, sample order and input spikes.
    """

    hidden: Tuple[int, ...] = (256,)
    steps: int = 128
    test_steps: int = 128
    eta: float = 0.1
    batch: int = 32
    epochs: int = 10
    layer_eta: Tuple[float, ...] = ()
    eta_final: float = 1.0
    tune_fraction: float = 0.3
    tune_eta: float = 0.3
    tune_tau_value: Optional[float] = None
    rate: float = 1.0
    feedback: float = 0.025
    error_gain: float = 1.0
    tau_error: float = 20e-3
    tau_value: float = 2.0
    tau_trace: float = 20e-3
    trace_impulse: float = 1.0
    start: str = "zero"
    error_floor: bool = True
    value_floor: bool = False
    value_leak: str = "positive"
    leak_free_steps: int = 0
    dt: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        # Frozen: the checked values (Python ints, hidden a tuple) are stored as a dataclass's __init__ would.
        object.__setattr__(self, "hidden", check_widths("hidden", self.hidden))
        for name in ("steps", "test_steps", "batch", "epochs"):
            object.__setattr__(self, name, check_int(name, getattr(self, name)))
        object.__setattr__(self, "seed", check_int("seed", self.seed, minimum=0))  # numpy refuses negative seeds
        if not is_int(self.leak_free_steps) or not 0 <= self.leak_free_steps <= self.steps:
            raise ValueError(f"leak_free_steps must be an integer in [0, steps={self.steps}], got {self.leak_free_steps!r}")
        object.__setattr__(self, "leak_free_steps", int(self.leak_free_steps))
        if self.steps & (self.steps - 1):
            raise ValueError(f"steps must be a power of two (the rule learns every 2**k steps), got {self.steps}")
        if self.value_leak not in ("both", "positive"):
            raise ValueError(f"value_leak must be 'both' or 'positive', got {self.value_leak!r}")
        if self.start not in ("forward", "zero"):
            raise ValueError(f"start must be 'forward' or 'zero', got {self.start!r}")
        if not 0 <= self.tune_fraction <= 1:
            raise ValueError(f"tune_fraction must lie in [0, 1] (a fraction of the epochs), got {self.tune_fraction!r}")
        if not self.tune_eta > 0:
            raise ValueError(f"tune_eta must be positive (a fraction of eta), got {self.tune_eta!r}")
        if self.tune_tau_value is not None and not self.tune_tau_value > 0:
            raise ValueError(f"tune_tau_value must be positive (seconds) or None, got {self.tune_tau_value!r}")
        if not 0 < self.eta_final <= 1:
            raise ValueError(f"eta_final must lie in (0, 1] (a fraction of eta), got {self.eta_final!r}")
        if self.layer_eta and len(self.layer_eta) != len(self.hidden) + 1:
            raise ValueError(f"layer_eta needs one factor per weight layer ({len(self.hidden) + 1} for hidden="
                             f"{self.hidden}), got {self.layer_eta!r}")
        if not all(f > 0 for f in self.layer_eta):
            raise ValueError(f"layer_eta factors must be positive, got {self.layer_eta!r}")
        if not 0 < self.rate <= 1:
            raise ValueError(f"rate must lie in (0, 1] spikes per step, got {self.rate!r}")
        for name in ("eta", "feedback", "error_gain", "tau_error", "tau_value", "tau_trace", "trace_impulse", "dt"):
            check_number(name, getattr(self, name))
        # An error unit's current gain is tau_error / dt - 1 (:attr:`current_gain`): zero at tau_error = dt (the
        # rule's eta divides by it) and negative below, which would turn learning into unlearning. A value unit
        # keeps 1 - dt / tau_value of its current a step: none at tau_value = dt, and its gate would close.
        for name in ("tau_error", "tau_value", "tune_tau_value"):
            tau = getattr(self, name)
            if tau is not None and not tau > self.dt:
                why = {"tau_error": f"the error units' current gain tau_error / dt - 1 would be {tau / self.dt - 1:g}",
                       "tau_value": f"a value unit would keep 1 - dt / tau_value = {1 - self.dt / tau:g} of its "
                                    f"current a step"}.get(name, "it replaces tau_value in the fine-tuning epochs")
                raise ValueError(f"{name} ({tau:g} s) must be longer than the time step dt ({self.dt:g} s): {why}")

    @property
    def tune_epochs(self) -> int:
        """The number of fine-tuning epochs at the end of training: ``floor(tune_fraction * epochs)``."""
        return int(math.floor(self.tune_fraction * self.epochs + 1e-9))  # 0.3 * 10 is 3.0000000000000004

    @property
    def current_gain(self) -> float:
        """An error unit's current (as the engine reports it, after the step's decay, and as ``y2`` reads
        it) per unit of a steady error: ``tau_error / dt - 1``."""
        return self.tau_error / self.dt - 1.0

    @property
    def rule_eta(self) -> float:
        """The rule's ``eta`` in spiking units: ``y2`` reads :attr:`current_gain` times the error, ``x1``
        ``rate / (1 - exp(-dt / tau_trace))`` times the activity, the weights are ``1 / rate`` times the
        rate network's, and the batch's updates are summed."""
        trace_gain = self.trace_impulse * self.rate / (1.0 - math.exp(-self.dt / self.tau_trace)) * self.rate
        return self.eta / self.batch / self.current_gain / trace_gain


TOP = "y"


def value_model(cfg: SpikingPCConfig, mirror: bool = False) -> LIF:
    """Value units: current = value in [-1, 1] (saturating), ``cfg.rate`` spikes per step per unit of
    its positive part; feedback from the layer above passes only while the value lies in (0, 1), where
    ``f = clip(., 0, 1)`` has slope 1 (``mirror``: the unit holding minus the value, gate (-1, 0)).

    The threshold sits a hair below ``rate`` units of integrated current so that an exact
    ``1 / rate`` steps suffice for a spike (the comparison is strict)."""
    tau_mem = 1.0
    # The gate reads the current after its decay: a value saturated at 1 is held as 1 - dt/tau_value,
    # where the gate must be closed already (f' = 0 at the bound).
    top = (1 - 1e-6) * (1 - cfg.dt / cfg.tau_value)
    gate = (-top, 0.0) if mirror else (0.0, top)
    return LIF(tau_mem=tau_mem, tau_syn=cfg.tau_value, v_th=(1 - 1e-6) * cfg.dt / tau_mem / cfg.rate,
               i_min=-1.0, i_max=1.0, gate_min=gate[0], gate_max=gate[1], subtract_reset=True,
               v_min=0.0 if cfg.value_floor else -math.inf,
               syn_leak="both" if cfg.value_leak == "both" else ("negative" if mirror else "positive"))


def error_model(cfg: SpikingPCConfig) -> LIF:
    """Error units: ``error_gain`` spikes per step per unit error (their current is ``tau_error / dt`` x it)."""
    tau_mem = 1.0
    return LIF(tau_mem=tau_mem, tau_syn=cfg.tau_error, v_th=(cfg.dt / tau_mem) * (cfg.tau_error / cfg.dt) / cfg.error_gain,
               subtract_reset=True, v_min=0.0 if cfg.error_floor else -math.inf)


def build_spiking(
    n_inputs: int, n_outputs: int, cfg: SpikingPCConfig = SpikingPCConfig(), top_feedback: bool = True,
    rule_eta: Optional[float] = None,
) -> Network:
    """The graph: inputs ``x0`` (pixels, rate-coded), ``bias`` (always on) and ``y`` (the label, top value),
    value pairs ``x<l>``/``x<l>m`` for the hidden layers, error pairs ``e<l>p``/``e<l>n`` for ``l = 1..L``.

    Plastic ``W<l>p``/``W<l>n`` (``-W``/``+W``) and ``B<l>p``/``B<l>n``; static ``x<l>_to_e<l>p``/``n``
    (``+-1``), ``x<l>m_to_e<l>p``/``n`` (``-+1``) and ``e<l>p``/``n_to_x<l>`` (``-+feedback``, mirrored
    onto ``x<l>m``); tied and gated ``e<l>p``/``n_to_x<l-1>`` and ``_to_x<l-1>m`` (``feedback * W^T``,
    signs as the pairs). ``top_feedback=False`` leaves out the top error's
    feedback (the network used for prediction). ``rule_eta`` overrides :attr:`SpikingPCConfig.rule_eta`
    (e.g. a power of two, which Loihi's learning engine represents exactly); each layer's rule scales it by
    its :attr:`SpikingPCConfig.layer_eta` factor.
    """
    widths = [n_inputs, *cfg.hidden, n_outputs]
    L = len(widths) - 1
    rng = np.random.default_rng(cfg.seed)
    base_eta = cfg.rule_eta if rule_eta is None else rule_eta
    factors = cfg.layer_eta or (1.0,) * L
    net = Network(dt=cfg.dt, name="spiking_predictive_coding")
    rate_code = RegularEncoder(max_rate=cfg.rate / cfg.dt)  # a value in [0, 1]: rate x value spikes per step
    net.input("x0", n_inputs, rate_code)
    net.input("bias", 1, rate_code)
    values = ["x0"]
    for l in range(1, L + 1):
        if l < L:
            net.population(f"x{l}", widths[l], value_model(cfg))
            net.population(f"x{l}m", widths[l], value_model(cfg, mirror=True))
            values.append(f"x{l}")
        else:
            net.input(TOP, n_outputs, rate_code)
            values.append(TOP)
    for l in range(1, L + 1):
        n, n_pre = widths[l], widths[l - 1]
        w = rng.normal(0.0, 1.0 / np.sqrt(n_pre), (n, n_pre)) / cfg.rate  # spikes carry rate x activity
        rule = pc_rule(base_eta * factors[l - 1], tau=cfg.tau_trace, u_exponent=cfg.steps.bit_length() - 1,
                       impulse=cfg.trace_impulse)
        for sign, half in ((1.0, "p"), (-1.0, "n")):
            e = f"e{l}{half}"
            net.population(e, n, error_model(cfg))
            # e = f(x_l) - W f(x_{l-1}) - b: the predictions enter negated (the n copy: twice negated).
            net.connect(values[l - 1], e, -sign * w, rule=rule, name=f"W{l}{half}")
            net.connect("bias", e, np.zeros((n, 1)), rule=rule, name=f"B{l}{half}")
            net.connect(values[l], e, sign * np.eye(n) / cfg.rate, name=f"{values[l]}_to_{e}")
            if l < L:
                net.connect(f"x{l}m", e, -sign * np.eye(n) / cfg.rate, name=f"x{l}m_to_{e}")
                net.connect(e, values[l], -sign * cfg.feedback * np.eye(n), name=f"{e}_to_{values[l]}")
                net.connect(e, f"x{l}m", sign * cfg.feedback * np.eye(n), name=f"{e}_to_x{l}m")
            if l > 1 and (l < L or top_feedback):
                # x_{l-1} += feedback * W^T e_l: W<l>p holds -W (p: +e), W<l>n holds +W (n: -e).
                net.tied(e, values[l - 1], f"W{l}{half}", transpose=True, scale=-cfg.feedback,
                         name=f"{e}_to_{values[l - 1]}", gated=True)
                net.tied(e, f"x{l - 1}m", f"W{l}{half}", transpose=True, scale=cfg.feedback,
                         name=f"{e}_to_x{l - 1}m", gated=True)
    return net


class SpikingPC:
    """Trains and tests a :func:`build_spiking` network on the torch engine.

    Shapes: images ``(n, n_inputs)`` in [0, 1], labels ``(n,)`` integers.
    """

    def __init__(self, n_inputs: int, n_outputs: int, cfg: SpikingPCConfig = SpikingPCConfig(),
                 device: str = "cpu", dtype: torch.dtype = torch.float32, test_batch: int = 500) -> None:
        self.cfg, self.n_inputs, self.n_outputs, self.device, self.dtype = cfg, n_inputs, n_outputs, device, dtype
        self.L = len(cfg.hidden) + 1
        self.network = build_spiking(n_inputs, n_outputs, cfg)
        self.sim = Simulator(self.network, replicas=cfg.batch, device=device, dtype=dtype, seed=cfg.seed)
        self.test_network = build_spiking(n_inputs, n_outputs, cfg, top_feedback=False)
        self.test_batch = test_batch
        self._frozen: Dict[Tuple[int, bool], Simulator] = {}

    @property
    def plastic(self):
        return [n for n, p in self.network.projections.items() if p.rule is not None]

    def _onehot(self, labels: np.ndarray) -> torch.Tensor:
        """Labels ``(n,)`` as the top value's one-hot rates ``(n, classes)``."""
        onehot = torch.nn.functional.one_hot(torch.as_tensor(labels, dtype=torch.long), self.n_outputs)
        return onehot.to(self.dtype).to(self.device)

    def forward_values(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The feed-forward pass of images ``x`` ``(B, n_inputs)`` with the current weights: each hidden
        value population's current ``{"x<l>": (B, n_l)}``, ``clip(W_l f(x_{l-1}) + b_l, -1, 1)``."""
        out, a = {}, x
        for l, (w, b) in enumerate(self.rate_weights(numpy=False)[:-1], start=1):
            v = (a.to(w.dtype) @ w.T + b).clamp(-1.0, 1.0)
            out[f"x{l}"], a = v.to(self.dtype), v.clamp(0.0, 1.0)
        return out

    def start(self, sim: Simulator, x: torch.Tensor) -> None:
        """Reset ``sim``'s neurons for a new presentation of ``x`` and start the hidden values where
        :attr:`SpikingPCConfig.start` says (their mirrors at minus that)."""
        sim.reset_neurons()
        if self.cfg.start == "forward":
            for name, v in self.forward_values(x).items():
                sim.state[name]["i"] = v.clone()
                sim.state[f"{name}m"]["i"] = -v

    def present(self, sim: Simulator, inputs: Dict[str, torch.Tensor], steps: int, monitors=()) -> Recording:
        """Run a clamped presentation of ``steps`` steps on ``sim`` (started already): the values leak
        but for the last :attr:`SpikingPCConfig.leak_free_steps` of them."""
        free = min(self.cfg.leak_free_steps, steps)
        first = sim.run(steps - free, inputs=inputs, monitors=monitors)
        if not free:
            return first
        leaking = {name: sim.models[name] for name in self._value_populations()}
        for name, model in leaking.items():
            sim.set_model(name, replace(model, syn_leak="none"))
        try:
            last = sim.run(free, inputs=inputs, monitors=monitors, first_step=steps - free)
        finally:
            for name, model in leaking.items():
                sim.set_model(name, model)
        return first.then(last)

    def _value_populations(self):
        return [name for l in range(1, self.L) for name in (f"x{l}", f"x{l}m")]

    def _set_value_leak(self, tau_value: float) -> None:
        """Step the training simulator's value pairs with ``tau_value`` (s) from now on."""
        cfg = replace(self.cfg, tau_value=tau_value)
        for name in self._value_populations():
            self.sim.set_model(name, value_model(cfg, mirror=name.endswith("m")))

    def learn(self, x: torch.Tensor, onehot: torch.Tensor) -> None:
        """Show ``cfg.batch`` samples for ``cfg.steps`` steps with their labels clamped; learn at the end."""
        self.start(self.sim, x)
        ones = torch.ones(len(x), 1, dtype=self.dtype)
        self.present(self.sim, {"x0": x, "bias": ones, TOP: onehot}, self.cfg.steps)

    def train(self, x: np.ndarray, labels: np.ndarray, progress: bool = False) -> float:
        """``cfg.epochs`` epochs over the images ``(n, n_inputs)`` and labels ``(n,)`` (the last incomplete
        batch of each is left out, as the replicas are fixed: ``n >= cfg.batch``); returns seconds spent."""
        cfg = self.cfg
        labels = check_dataset("train", x, labels, self.n_inputs, self.n_outputs)
        if len(x) < cfg.batch:
            raise ValueError(f"train: {len(x)} images are fewer than one batch (cfg.batch={cfg.batch}); the "
                             f"replicas are fixed and an incomplete batch is left out, so nothing would be learned")
        xt = torch.as_tensor(x, dtype=self.dtype, device=self.device)
        onehot = self._onehot(labels)
        rng = np.random.default_rng(cfg.seed)
        n_batches = len(x) // cfg.batch
        t0 = time.perf_counter()
        bar = tqdm(total=cfg.epochs * n_batches, disable=not progress, desc="spiking PC", unit="batch")
        try:
            for epoch in range(cfg.epochs):
                tuning = epoch >= cfg.epochs - cfg.tune_epochs
                fraction = 1.0 - (1.0 - cfg.eta_final) * epoch / max(cfg.epochs - 1, 1)
                fraction *= cfg.tune_eta if tuning else 1.0
                for name in self.plastic:
                    self.sim.set_param(name, "eta", self.network.projections[name].rule.params["eta"] * fraction)
                if tuning and cfg.tune_tau_value is not None:
                    self._set_value_leak(cfg.tune_tau_value)
                order = rng.permutation(len(x))
                for b in range(n_batches):
                    idx = torch.as_tensor(order[b * cfg.batch : (b + 1) * cfg.batch], device=self.device)
                    self.learn(xt[idx], onehot[idx])
                    bar.update()
                bad = [n for n in self.plastic if not torch.isfinite(self.sim.weights(n)).all()]
                if bad:
                    raise FloatingPointError(
                        f"spiking PC diverged in epoch {epoch + 1}: weights of {bad} are no longer finite; lower eta "
                        f"(now {cfg.eta}): where a prediction leaves the values' range [-1, 1] its error cannot "
                        f"vanish and that layer learns like LMS, stable for eta * E||x||^2 below about 2 "
                        f"(E||x||^2 = {float((xt**2).sum(1).mean()):.1f} for the input)"
                    )
        finally:
            bar.close()
            for name in self._value_populations():
                self.sim.set_model(name, self.network.populations[name].model)
        return time.perf_counter() - t0

    def frozen(self, replicas: int, clamped: bool = False) -> Simulator:
        """A simulator with the learned weights and learning off: the training graph (``clamped``:
        the label drives the top) or the prediction graph (top free), ``replicas`` samples at once
        (neurons reset; :meth:`start` them for a presentation)."""
        key = (replicas, clamped)
        sim = self._frozen.get(key)
        if sim is None:
            net = self.network if clamped else self.test_network
            sim = self._frozen[key] = Simulator(net, replicas=replicas, device=self.device, dtype=self.dtype,
                                                seed=self.cfg.seed + 1)
            sim.learning = False
        for name in self.plastic:
            sim.set_weights(name, self.sim.weights(name))
        sim.reset_neurons()
        return sim

    def output_counts(self, x: np.ndarray) -> np.ndarray:
        """Spike counts of ``e<L>n`` minus ``e<L>p`` over the last half of ``cfg.test_steps`` steps (the
        first half lets the values and error currents settle), label silent ``(n, classes)``."""
        check_images("output_counts", x, self.n_inputs)
        settle = self.cfg.test_steps // 2
        top_n, top_p = f"e{self.L}n.spikes", f"e{self.L}p.spikes"
        out = []
        for start in range(0, len(x), self.test_batch):
            chunk = torch.as_tensor(x[start : start + self.test_batch], dtype=self.dtype, device=self.device)
            sim = self.frozen(len(chunk))
            self.start(sim, chunk)
            rec = sim.run(self.cfg.test_steps, inputs={"x0": chunk, "bias": torch.ones(len(chunk), 1)},
                          monitors=[top_n, top_p])
            out.append((rec[top_n][settle:].sum(dim=0) - rec[top_p][settle:].sum(dim=0)).cpu().numpy())
        return np.concatenate(out)

    def clamped_run(self, x: np.ndarray, labels: np.ndarray, monitors=(),
                    steps: Optional[int] = None) -> Tuple[np.ndarray, Recording]:
        """Show images with their labels clamped for ``steps`` steps (default ``cfg.steps``, the training
        presentation, its last ``cfg.leak_free_steps`` without the values' leak), learning off.

        Returns the energy ``1/2 sum_l ||e_l||^2`` per step (batch mean, errors read from the
        ``e<l>p`` currents) ``(steps,)`` and the recording of ``monitors``."""
        labels = check_dataset("clamped_run", x, labels, self.n_inputs, self.n_outputs)
        xt = torch.as_tensor(x, dtype=self.dtype, device=self.device)
        onehot = self._onehot(labels)
        sim = self.frozen(len(x), clamped=True)
        self.start(sim, xt)
        errors = [f"e{l}p.i" for l in range(1, self.L + 1)]
        rec = self.present(sim, {"x0": xt, "bias": torch.ones(len(x), 1), TOP: onehot},
                           self.cfg.steps if steps is None else steps, monitors=[*errors, *monitors])
        gain = self.cfg.current_gain
        energy = sum(0.5 * ((rec[m] / gain) ** 2).sum(dim=2).mean(dim=1) for m in errors)
        return energy.cpu().numpy(), rec

    def accuracy(self, x: np.ndarray, labels: np.ndarray) -> float:
        """Test accuracy of the spike-count readout (:meth:`output_counts`) on images ``(n, n_inputs)`` with
        labels ``(n,)``; a fraction in [0, 1]."""
        labels = check_dataset("accuracy", x, labels, self.n_inputs, self.n_outputs)
        return float((self.output_counts(x).argmax(axis=1) == labels).mean())

    def rate_weights(self, numpy: bool = True):
        """The learned predictions in the rate network's units: ``[(W_l (n_l, n_{l-1}), b_l (n_l,))]``,
        numpy float64 arrays (``numpy=False``: tensors on the simulator's device and dtype)."""
        r = self.cfg.rate
        out = [(-self.sim.weights(f"W{l}p") * r, -self.sim.weights(f"B{l}p")[:, 0] * r) for l in range(1, self.L + 1)]
        return [(w.cpu().double().numpy(), b.cpu().double().numpy()) for w, b in out] if numpy else out

    def rate_accuracy(self, x: np.ndarray, labels: np.ndarray) -> float:
        """Accuracy of the rate network's forward pass (``f = clip(., 0, 1)``) with the learned weights:
        what the spike-count readout approximates."""
        labels = check_dataset("rate_accuracy", x, labels, self.n_inputs, self.n_outputs)
        v = np.asarray(x, dtype=np.float64)
        layers = self.rate_weights()
        for l, (w, b) in enumerate(layers):
            v = v @ w.T + b
            if l < len(layers) - 1:
                v = np.clip(v, 0.0, 1.0)
        return float((v.argmax(axis=1) == labels).mean())
