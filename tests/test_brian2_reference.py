"""The torch engine agrees with Brian2, an independent reference simulator.

The Brian2 models here are written by hand from Brian2's own vocabulary
(equations, ``SpikeGeneratorGroup``, ``Synapses`` with event-driven traces);
nothing of ours generates them, so they check the engine independently:

* LIF dynamics, the synaptic one-step delay, threshold and reset: the same
  input spikes give identical spike times (every neuron, every spike) over
  1,000+ steps, and membrane potentials equal to rounding;
* pair-based STDP (additive and multiplicative) with all-to-all traces: the
  same weight trajectory on every synapse, compared at every step.

Timing. One engine step ``k`` (numbered from 1) does: ``i_new = i + W s_in(k-1)``
(the input buffered at the previous step), ``v += dt/tau_mem (v_leak - v + i_new)``,
``i = i_new (1 - dt/tau_syn)``, threshold, reset; then the spikes of step ``k``
go into the buffer. Writing ``J_k = i_new(k+1) = i_k + W s_in(k)``, this is
``v_k = v_{k-1} + dt/tau_mem (v_leak - v_{k-1} + J_{k-1})`` and
``J_k = J_{k-1} (1 - dt/tau_syn) + W s_in(k)``, from ``v_0 = v_leak``, ``J_0 = 0``.

Brian2's default schedule runs, in the time step at ``t_n = n dt`` (``n`` from
0): ``groups`` (forward-Euler state update from the values left by step
``n-1``: ``v += dt/tau_mem (v_leak - v + i)``, ``i += -dt i/tau_syn``),
``thresholds`` (the neurons' spikes and the ``SpikeGeneratorGroup``'s spikes
at ``t_n``), ``synapses`` (``i_post += w`` for those input spikes, no delay),
``resets``. So Brian's ``i`` after step ``n`` obeys
``I_n = I_{n-1} (1 - dt/tau_syn) + W s_in(t_n)`` and ``v_n`` uses ``I_{n-1}``:
the same recursion as the engine's ``(v_k, J_k)`` with ``n = k - 1``, from the
same start (``v = v_leak``, ``I = 0`` before ``n = 0``). Hence

    engine step k  <->  Brian2 time t = (k - 1) dt,

i.e. row ``r`` of the input/recorded arrays (``r = k - 1``) is Brian2's time
``r dt`` both for the input spikes fed in and for the spikes that come out. An
input spike in row ``r`` first moves ``v`` at row ``r + 1`` in both simulators.
"""

import numpy as np
import pytest
import torch

from neuro import LIF, Network, Simulator, standard_rules

b2 = pytest.importorskip("brian2")

# brian2 2.9 calls pyparsing's camelCase API, which pyparsing 3.3 deprecates (noise, not ours).
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated.*:DeprecationWarning")

DT = 1e-3
T = 1200  # steps (>= 1,000)
N_IN, N_OUT = 24, 10
LIF_PARAMS = dict(tau_mem=10e-3, tau_syn=5e-3, v_th=1.0, v_reset=0.0, v_leak=0.0)


@pytest.fixture(autouse=True)
def brian2_numpy_target():
    """Brian2's runtime numpy target (no compiler needed), a fresh scope, float64; restored after."""
    old_target = b2.prefs.codegen.target
    old_dtype = b2.prefs.core.default_float_dtype
    b2.prefs.codegen.target = "numpy"
    b2.prefs.core.default_float_dtype = np.float64
    b2.start_scope()
    b2.defaultclock.dt = DT * b2.second
    try:
        yield
    finally:
        b2.prefs.codegen.target = old_target
        b2.prefs.core.default_float_dtype = old_dtype


def input_spikes(seed=0, rate=0.03, steps=T, n=N_IN):
    """Poisson-like 0/1 input spikes ``(steps, n)``."""
    rng = np.random.default_rng(seed)
    return (rng.random((steps, n)) < rate).astype(np.float64)


def initial_weights(seed=1, low=-0.3, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, (N_OUT, N_IN))


def spike_lists(spikes):
    """Row indices of the spikes of each neuron, from a ``(steps, n)`` 0/1 array."""
    return [np.flatnonzero(spikes[:, j]).tolist() for j in range(spikes.shape[1])]


# --- the torch engine ---------------------------------------------------------------------------
def run_engine(spikes, w0, lif=LIF_PARAMS, rule=None):
    net = Network(dt=DT)
    inp = net.input("inp", N_IN)
    pop = net.population("lif", N_OUT, LIF(**lif))
    net.connect(inp, pop, w0, rule=rule)  # projection "inp_to_lif"
    sim = Simulator(net, replicas=1, dtype=torch.float64)
    monitors = ["lif.spikes", "lif.v"] + (["inp_to_lif.w"] if rule is not None else [])
    rec = sim.run(spikes.shape[0], inputs={"inp": torch.as_tensor(spikes)}, monitors=monitors)
    out = {
        "spikes": rec["lif.spikes"][:, 0].numpy(),  # (T, N_OUT)
        "v": rec["lif.v"][:, 0].numpy(),
    }
    if rule is not None:
        out["w"] = rec["inp_to_lif.w"][:, 0].numpy()  # (T, post, pre), after each step's learning
    return out


# --- Brian2, written by hand --------------------------------------------------------------------
LIF_EQS = """
dv/dt = (v_leak - v + isyn) / tau_mem : 1
disyn/dt = -isyn / tau_syn : 1
"""
# (Brian2 reserves the name ``i`` for the neuron index, so the current is ``isyn`` here.)


def brian_lif(lif):
    ns = {
        "tau_mem": lif["tau_mem"] * b2.second,
        "tau_syn": lif["tau_syn"] * b2.second,
        "v_th": lif["v_th"],
        "v_reset": lif["v_reset"],
        "v_leak": lif["v_leak"],
    }
    G = b2.NeuronGroup(
        N_OUT, LIF_EQS, threshold="v > v_th", reset="v = v_reset", method="euler", namespace=ns, name="lif"
    )
    G.v = lif["v_leak"]
    G.isyn = 0.0
    return G


def brian_input(spikes):
    rows, idx = np.nonzero(spikes)
    # Input row r is Brian2's time r*dt (see the module docstring). Integer milliseconds
    # times dt are exact bin starts; Brian2 puts each spike in the step whose time it is.
    return b2.SpikeGeneratorGroup(N_IN, idx, rows * DT * b2.second, name="inp")


def brian_outputs(G, spike_mon, v_mon, steps):
    spikes = np.zeros((steps, N_OUT))
    rows = np.rint(np.asarray(spike_mon.t / b2.second) / DT).astype(int)
    spikes[rows, np.asarray(spike_mon.i)] = 1.0
    return spikes, np.asarray(v_mon.v).T  # v: (steps, N_OUT)


def run_brian_lif(spikes, w0, lif=LIF_PARAMS):
    steps = spikes.shape[0]
    inp = brian_input(spikes)
    G = brian_lif(lif)
    S = b2.Synapses(inp, G, "w : 1", on_pre="isyn_post += w", name="syn")
    S.connect()  # all-to-all
    S.w = w0[np.asarray(S.j), np.asarray(S.i)]  # w0 is (post, pre)
    spike_mon = b2.SpikeMonitor(G)
    # when="end": v after this step's reset, which is what the engine's "lif.v" holds.
    v_mon = b2.StateMonitor(G, "v", record=True, when="end")
    b2.Network(inp, G, S, spike_mon, v_mon).run(steps * DT * b2.second, namespace={})
    return brian_outputs(G, spike_mon, v_mon, steps)


# --- 1. LIF dynamics ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "lif",
    [
        LIF_PARAMS,
        # A resting potential and a reset below it, other time constants.
        dict(tau_mem=20e-3, tau_syn=3e-3, v_th=0.8, v_reset=-0.2, v_leak=0.1),
    ],
    ids=["default", "leak_and_reset"],
)
def test_lif_spike_times_match_brian2(lif):
    spikes = input_spikes(seed=0)
    w0 = initial_weights(seed=1)
    ours = run_engine(spikes, w0, lif)
    ref_spikes, ref_v = run_brian_lif(spikes, w0, lif)

    assert ref_spikes.sum() > 50 and ours["spikes"].sum() > 50, "too little activity to be a test"
    assert (ref_spikes.sum(0) > 0).all(), "every neuron should spike"
    ours_lists, ref_lists = spike_lists(ours["spikes"]), spike_lists(ref_spikes)
    for j in range(N_OUT):
        assert ours_lists[j] == ref_lists[j], f"neuron {j}: engine {ours_lists[j]} vs Brian2 {ref_lists[j]}"
    # The membrane potentials agree at every step too, to float64 rounding.
    assert np.abs(ours["v"] - ref_v).max() < 1e-12


def test_lif_membrane_matches_brian2_to_float64_rounding():
    lif = dict(tau_mem=20e-3, tau_syn=3e-3, v_th=0.8, v_reset=-0.2, v_leak=0.1)
    spikes = input_spikes(seed=0)
    w0 = initial_weights(seed=1)
    ours = run_engine(spikes, w0, lif)
    _, ref_v = run_brian_lif(spikes, w0, lif)
    assert np.abs(ours["v"] - ref_v).max() < 1e-12


def test_brian2_reference_is_sensitive_to_tau_mem():
    """Negative control: a 10% different membrane time constant in Brian2 changes the spike times."""
    spikes = input_spikes(seed=0)
    w0 = initial_weights(seed=1)
    ours = run_engine(spikes, w0)
    wrong = dict(LIF_PARAMS, tau_mem=LIF_PARAMS["tau_mem"] * 1.1)
    ref_spikes, _ = run_brian_lif(spikes, w0, wrong)
    assert spike_lists(ours["spikes"]) != spike_lists(ref_spikes)
    assert np.abs(ours["spikes"] - ref_spikes).sum() > 10


# --- 2. STDP ------------------------------------------------------------------------------------
# w_min = 0 makes the additive rule clip some weights (handled identically in both);
# the initial weights lie inside [w_min, w_max]. (The engine clamps *every* weight after
# each epoch, Brian2's pathways only those with an event: the same for in-range weights.)
STDP = dict(a_plus=0.01, a_minus=0.012, tau_plus=20e-3, tau_minus=30e-3, w_min=0.0, w_max=1.0)


def run_brian_stdp(spikes, w0, p, multiplicative, split_simultaneous=True):
    """Trace-based STDP with event-driven traces, as in Brian2's documentation, arranged so
    that it follows the engine's conventions:

    * traces read at a spike include that step's own impulse, for simultaneous pre and
      post spikes too: the trace increments run (orders 1, 2) before either weight update
      (orders 3, 4);
    * every contribution of a step is computed from the weight before the step, summed
      into ``dw_acc``, and applied with one clip (orders 5, 6; when pre and post both
      spike the second application adds 0 and clips an already clipped weight);
    * transmission (order 0) uses the weight before this step's learning.

    With ``split_simultaneous=False`` it is the textbook single-pathway version
    (``on_pre``: increment apre, update w from apost; ``on_post`` likewise), in which
    a pre spike does not see a simultaneous post spike: used as a negative control.
    """
    steps = spikes.shape[0]
    inp = brian_input(spikes)
    G = brian_lif(LIF_PARAMS)
    model = """
    w : 1
    dw_acc : 1
    dapre/dt = -apre / tau_plus : 1 (event-driven)
    dapost/dt = -apost / tau_minus : 1 (event-driven)
    """
    if multiplicative:
        ltp, ltd = "a_plus * apre * (w_max - w)", "a_minus * apost * (w - w_min)"
    else:
        ltp, ltd = "a_plus * apre", "a_minus * apost"
    apply = "w = clip(w + dw_acc, w_min, w_max)\ndw_acc = 0"
    if split_simultaneous:
        on_pre = {"transmit": "isyn_post += w", "pre_trace": "apre += 1", "pre_w": f"dw_acc -= {ltd}", "pre_apply": apply}
        on_post = {"post_trace": "apost += 1", "post_w": f"dw_acc += {ltp}", "post_apply": apply}
    else:
        on_pre = f"isyn_post += w\napre += 1\nw = clip(w - {ltd}, w_min, w_max)"
        on_post = f"apost += 1\nw = clip(w + {ltp}, w_min, w_max)"
    ns = {k: (v * b2.second if k.startswith("tau") else v) for k, v in p.items()}
    S = b2.Synapses(inp, G, model, on_pre=on_pre, on_post=on_post, namespace=ns, name="syn")
    if split_simultaneous:
        for order, pathway in enumerate(["transmit", "pre_trace", "post_trace", "pre_w", "post_w", "pre_apply", "post_apply"]):
            getattr(S, pathway).order = order
    S.connect()
    pre, post = np.asarray(S.i), np.asarray(S.j)
    S.w = w0[post, pre]
    spike_mon = b2.SpikeMonitor(G)
    v_mon = b2.StateMonitor(G, "v", record=True, when="end")
    # when="end": the weight after this step's learning, as the engine records it.
    w_mon = b2.StateMonitor(S, "w", record=True, when="end")
    b2.Network(inp, G, S, spike_mon, v_mon, w_mon).run(steps * DT * b2.second, namespace={})
    out_spikes, _ = brian_outputs(G, spike_mon, v_mon, steps)
    w = np.zeros((steps, N_OUT, N_IN))
    w[:, post, pre] = np.asarray(w_mon.w).T
    return out_spikes, w


def stdp_setting(multiplicative):
    spikes = input_spikes(seed=2, rate=0.02)
    w0 = initial_weights(seed=3, low=0.0, high=0.8)
    rule = standard_rules.stdp(multiplicative=multiplicative, **STDP)
    return spikes, w0, rule


@pytest.mark.parametrize("multiplicative", [False, True], ids=["additive", "multiplicative"])
def test_stdp_weight_trajectory_matches_brian2(multiplicative):
    spikes, w0, rule = stdp_setting(multiplicative)
    ours = run_engine(spikes, w0, rule=rule)
    ref_spikes, ref_w = run_brian_stdp(spikes, w0, STDP, multiplicative)

    # The post neurons fire, identically (the weights they see are the same at every step).
    assert ours["spikes"].sum() > 50
    assert spike_lists(ours["spikes"]) == spike_lists(ref_spikes)
    # Every weight, at every step (T >= 1,000 samples, one per step).
    assert ours["w"].shape == ref_w.shape == (T, N_OUT, N_IN)
    err = np.abs(ours["w"] - ref_w).max()
    assert err < 1e-4, f"max |w_engine - w_brian2| = {err:.3g}"
    # ... and the comparison is not vacuous: potentiation and depression both happened,
    # by much more than one update, including simultaneous pre/post spikes.
    change = ref_w[-1] - w0
    assert (change > 0).any() and (change < 0).any()
    assert np.abs(change).max() > 10 * STDP["a_plus"]
    assert (ours["spikes"][:, :, None] * spikes[:, None, :]).sum() > 0, "no simultaneous pre/post spikes"
    if not multiplicative:  # hard bounds were hit, so clipping was compared too
        assert ((ref_w == STDP["w_min"]) | (ref_w == STDP["w_max"])).any(axis=0).sum() > 5


def test_stdp_convention_for_simultaneous_spikes_matters():
    """Negative control: Brian2's textbook single-pathway STDP, where a pre spike does not see
    a simultaneous post spike's impulse, gives different weights than the engine (and than the
    split version above), so the comparison above checks that convention."""
    spikes, w0, rule = stdp_setting(False)
    ours = run_engine(spikes, w0, rule=rule)
    _, ref_w = run_brian_stdp(spikes, w0, STDP, False, split_simultaneous=False)
    assert np.abs(ours["w"] - ref_w).max() > 1e-3
