"""``Simulator(native=True)``: the generated C++ loop simulates what the torch engine does.

Every kind of network the loop runs (encoders with and without randomness, LIF with every feature,
IAF, ties, gated projections, masks, per-replica weights, driven traces and third factors, epochs and
``u`` periods, tags and delays, clipping after ``set_weights``) against the torch engine in float64:
the same spikes, and weights, traces and neuron state equal to rounding (sums may add in another
order). Rules with operations across neurons are refused by name.
"""
import subprocess

import numpy as np
import pytest
import torch

from neuro import LIF, LearningRule, Network, PoissonEncoder, Simulator, Trace, softmax, u, w, x0, x1, y0, y1
from neuro.standard_rules import stdp
from neuro.native import FLAGS, NativeError, compiler
from networks import softhebb
from networks.softhebb import SoftHebbConfig, SpikingConfig

from test_cuda_graphs import (_monitors, _spiking_pc, _stdp_poisson, _tag_delay_masked_per_replica, _third_factor,
                              _window)

pytestmark = pytest.mark.skipif(compiler() is None, reason="needs a C++ compiler")


def _lif_features_iaf():
    """Gates, bounds, subtractive reset, a membrane floor, one-sided and no leaks, adaptive thresholds, IAF, a tie, t_epoch 3."""
    rule = LearningRule(dw=0.03 * y0 * x1 - 0.02 * x0 * y1, traces={"x1": Trace(0.5, 15e-3), "y1": Trace(1.0, 10e-3)},
                        t_epoch=3, w_min=-1.0, w_max=1.0)
    net = Network(dt=1e-3)
    net.input("inp", 12)
    net.population("a", 8, LIF(tau_mem=10e-3, v_th=0.4, i_min=-1.0, i_max=1.0, gate_min=-0.5, gate_max=0.8,
                               subtract_reset=True, v_min=-0.5, theta_plus=0.05, tau_theta=40e-3,
                               syn_leak="positive"))
    from neuro import IAF
    net.population("b", 5, IAF(v_th=0.6))
    rng = np.random.default_rng(11)
    net.connect("inp", "a", rng.uniform(-0.2, 0.6, (8, 12)), rule=rule, name="ff")
    net.connect("a", "b", rng.uniform(0, 0.4, (5, 8)), name="ab")
    net.connect("b", "a", rng.uniform(-0.3, 0.3, (8, 5)), name="ba", gated=True)
    net.population("c", 12, LIF(tau_mem=20e-3, v_th=0.3, syn_leak="negative"))
    net.population("d", 4, LIF(tau_mem=20e-3, v_th=0.3, syn_leak="none"))
    net.connect("a", "d", rng.uniform(-0.3, 0.5, (4, 8)), name="ad")
    net.tied("a", "c", "ff", transpose=True, scale=-0.5, name="back")
    net.tied("inp", "a", "ff", transpose=False, scale=0.3, name="side")
    spikes = (torch.rand(64, 3, 12, generator=torch.Generator().manual_seed(12)) < 0.3).double()
    return net, {"inp": spikes}, {}


def _two_poisson_inputs():
    """Two Poisson inputs: the loop's encoder draws must come in the engine's order (step by step,
    population by population) to be the same random numbers."""
    net = Network(dt=1e-3)
    net.input("a", 10, PoissonEncoder(max_rate=300.0))
    net.input("b", 6, PoissonEncoder(max_rate=150.0))
    net.population("out", 7, LIF(tau_mem=10e-3, v_th=0.4))
    rng = np.random.default_rng(13)
    net.connect("a", "out", rng.uniform(0, 0.4, (7, 10)), rule=stdp(a_plus=0.02, a_minus=0.021), name="fa")
    net.connect("b", "out", rng.uniform(0, 0.4, (7, 6)), name="fb")
    g = torch.Generator().manual_seed(14)
    return net, {"a": torch.rand(3, 10, generator=g), "b": torch.rand(6, generator=g)}, {}


def _epoch_products():
    """Epochs of 3 steps whose rule has ``y0`` products (traces at the post's spike) and ``u`` products
    (traces at the epoch's end), in an epoch where both are on: GCC 12.2 at -O2 once read the wrong power
    of the decay in the ``u`` product (it threaded a jump on the ``y0`` branch's spike time)."""
    rule = LearningRule(dw=0.02 * y0 * x1 + 0.003 * u * x1 * y1 - 0.004 * u * w,
                        traces={"x1": Trace(1.0, 20e-3), "y1": Trace(1.0, 10e-3)}, t_epoch=3)
    net = Network(dt=1e-3)
    net.input("inp", 6)
    net.population("out", 5, LIF(tau_mem=10e-3, v_th=0.3))
    net.connect("inp", "out", np.random.default_rng(0).uniform(0, 0.8, (5, 6)), rule=rule, name="ff")
    spikes = (torch.rand(64, 3, 6, generator=torch.Generator().manual_seed(1)) < 0.4).double()
    return net, {"inp": spikes}, {}


def _softhebb_spiking_plain():
    net = softhebb.build_spiking(16, SoftHebbConfig(n_neurons=12, seed=1), SpikingConfig())
    return net, {"pixels": torch.rand(3, 16, generator=torch.Generator().manual_seed(10))}, {}


NETWORKS = {f.__name__[1:]: f for f in (_epoch_products, _stdp_poisson, _tag_delay_masked_per_replica, _third_factor, _spiking_pc,
                                         _lif_features_iaf, _softhebb_spiking_plain, _two_poisson_inputs)}


def _simulate(net, inputs, factors, native, every=2, dtype=torch.float64):
    sim = Simulator(net, replicas=3, dtype=dtype, seed=1, native=native)
    recs = []
    for n in (64, 37):
        recs.append(sim.run(n, _window(inputs, 0, n), _window(factors, 0, n), monitors=_monitors(net), every=every))
    sim.set_weights(_monitors(net)[-1][:-2], sim.weights(_monitors(net)[-1][:-2]) * 3.0)  # some above w_max
    recs.append(sim.run(16, _window(inputs, 0, 16), _window(factors, 0, 16), monitors=_monitors(net), every=16))
    return recs, sim


@pytest.mark.parametrize("every", [2, 16])  # calls of 2 steps work on the dense tensors, of 16 on compact synapses
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_native_loop_matches_the_torch_engine(name, every):
    net, inputs, factors = NETWORKS[name]()
    (plain, sim_p), (native, sim_n) = (_simulate(net, inputs, factors, False, every),
                                       _simulate(net, inputs, factors, True, every))
    plastic = _monitors(net)[-1]
    assert not torch.equal(plain[0][plastic][0], plain[0][plastic][-1])  # it learns
    for a, b in zip(plain, native):
        for m in a.data:
            assert a.steps[m] == b.steps[m]
            if m.endswith((".spikes", ".count")):
                assert torch.equal(a[m], b[m]), m
            else:
                torch.testing.assert_close(b[m], a[m], rtol=1e-10, atol=1e-12, msg=m)
    sa, sb = sim_p.state_dict(), sim_n.state_dict()
    for k in sa:
        if k not in ("rng_state",) and not k.startswith("buffers/"):
            np.testing.assert_allclose(sb[k], sa[k], rtol=1e-10, atol=1e-12, err_msg=k)
    assert sim_p.time_step == sim_n.time_step == 117


def test_native_float32_and_learning_off():
    net, inputs, _ = _stdp_poisson()
    runs = []
    for native in (False, True):
        sim = Simulator(net, replicas=3, seed=1, native=native)
        rec = sim.run(50, inputs, monitors=["out.count"], every=50)
        sim.learning = False
        frozen = sim.weights("ff")
        rec2 = sim.run(20, inputs, monitors=["out.spikes"])
        assert torch.equal(sim.weights("ff"), frozen)
        runs.append((rec["out.count"], rec2["out.spikes"], frozen))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    torch.testing.assert_close(runs[1][2], runs[0][2], rtol=1e-5, atol=1e-6)


def test_native_refuses_what_it_cannot_run():
    rule = LearningRule(dw=0.05 * y0 * x1 * softmax(w, 1.0), traces={"x1": Trace(1.0, 20e-3)})
    net = Network(dt=1e-3)
    net.input("inp", 4)
    net.population("out", 3, LIF())
    net.connect("inp", "out", np.full((3, 4), 0.1), rule=rule, name="ff")
    with pytest.raises(NativeError, match="projection 'ff': dw uses softmax"):
        Simulator(net, native=True)
    adaptive = softhebb.build_spiking(8, SoftHebbConfig(n_neurons=4), SpikingConfig(), adaptive=True)
    with pytest.raises(NativeError, match="sum_pre"):
        Simulator(adaptive, native=True)
    with pytest.raises(ValueError, match="cannot be combined with compile or graph_steps"):
        Simulator(_stdp_poisson()[0], native=True, graph_steps=8)
    with pytest.raises(NativeError, match="float32 or float64"):
        Simulator(_stdp_poisson()[0], native=True, dtype=torch.bfloat16)


def test_native_needs_the_third_factor_its_rule_reads():
    net, inputs, factors = _third_factor()
    sim = Simulator(net, replicas=3, native=True)
    with pytest.raises(ValueError, match="driven by 'third_factor'"):
        sim.run(4, inputs)
    sim.run(4, inputs, {"out": factors["out"][:4]})


def test_native_without_a_compiler_says_so(monkeypatch, tmp_path):
    import neuro.native as native

    monkeypatch.setattr(native, "compiler", lambda: None)
    monkeypatch.setattr(native, "_LOADED", {})
    monkeypatch.setenv("NEURO_NATIVE_CACHE", str(tmp_path))
    with pytest.raises(NativeError, match="needs a C\\+\\+ compiler"):
        Simulator(_stdp_poisson()[0], native=True)


# The smallest program GCC 12.2 got wrong at -O2 (1.4 instead of 1.7): a branch on a spike time, then the
# same time indexing a local table of powers. The loop's flags must compile it right on this machine.
_TABLE_INDEX_PROGRAM = r"""
#include <cstdio>
#include <cstdint>
__attribute__((noinline)) void f(int32_t* __restrict t, double* __restrict y, double* __restrict out, int n, int step) {
    for (int e = 0; e < n; ++e) t[e] = 3;
    if (step % 3 == 0) {
        const double pw[4] = {1.0, 0.9, 0.8, 0.7};
        for (int i = 0; i < n; ++i) {
            double acc = 0; bool any = false;
            if (t[i] > 0) { acc = any ? acc + pw[t[i]] : pw[t[i]]; any = true; }
            acc = any ? acc + (y[i] * pw[3] + pw[3 - t[i]]) : (y[i] * pw[3] + pw[3 - t[i]]);
            out[i] = acc;
        }
    }
}
int main() { int32_t t[1] = {0}; double y[1] = {0}, o[1]; f(t, y, o, 1, 3); std::printf("%g", o[0]); }
"""


def test_compiler_keeps_table_indices(tmp_path):
    (tmp_path / "p.cpp").write_text(_TABLE_INDEX_PROGRAM)
    subprocess.run([compiler(), *FLAGS, "-o", str(tmp_path / "p"), str(tmp_path / "p.cpp")], check=True)
    out = subprocess.run([str(tmp_path / "p")], capture_output=True, text=True, check=True).stdout
    assert out == "1.7"


def test_per_step_spikes_without_a_replica_axis_reach_every_replica_in_the_native_loop():
    """(steps, N) spikes are the same for every replica: the native loop must not read the steps as replicas."""
    net = Network(dt=1e-3)
    net.input("inp", 6)
    net.population("out", 4, LIF(v_th=0.3))
    net.connect("inp", "out", np.full((4, 6), 0.3), rule=stdp(a_plus=0.02, a_minus=0.021), name="ff")
    spikes = (torch.rand(20, 6, generator=torch.Generator().manual_seed(0)) < 0.5).double()
    for every in (1, 2, 20):
        ref = Simulator(net, replicas=2, dtype=torch.float64).run(20, {"inp": spikes}, monitors=["inp.spikes", "ff.w"], every=every)
        nat = Simulator(net, replicas=2, dtype=torch.float64, native=True).run(
            20, {"inp": spikes}, monitors=["inp.spikes", "ff.w"], every=every)
        torch.testing.assert_close(nat["inp.spikes"], ref["inp.spikes"], rtol=0, atol=0)
        torch.testing.assert_close(nat["ff.w"], ref["ff.w"], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"input 'inp': spikes needs shape \(steps=20, 6\) or \(20, 2, 6\), got \(20, 3, 6\)"):
        Simulator(net, replicas=2, native=True).run(20, {"inp": torch.ones(20, 3, 6)})


def test_ties_follow_the_first_epochs_clipping_when_u_is_zero():
    """The first epoch clips every weight even where u is 0 (u_exponent > 0): the tied copy must follow then too."""
    rule = LearningRule(dw=0.01 * u * (x1 * y1 - w), traces={"x1": Trace(1.0, 20e-3), "y1": Trace(1.0, 10e-3)},
                        t_epoch=2, u_exponent=1, w_min=0.0, w_max=0.5)
    net = Network(dt=1e-3)
    net.input("inp", 4)
    net.population("out", 3, LIF(v_th=0.05, tau_mem=2e-3))
    net.population("back", 4, LIF(v_th=2.0, tau_mem=1e-3, tau_syn=1e-3))
    net.connect("inp", "out", np.full((3, 4), 0.9), rule=rule, name="ff")
    net.tied("out", "back", "ff", name="fb")
    runs = [Simulator(net, dtype=torch.float64, native=native).run(8, {"inp": torch.ones(8, 1, 4)},
                                                                     monitors=["back.spikes", "fb.w"])
            for native in (False, True)]
    torch.testing.assert_close(runs[0]["back.spikes"], runs[1]["back.spikes"], rtol=0, atol=0)
    assert float(runs[0]["fb.w"][2].max()) == 0.5  # clipped at step 2, as its source
