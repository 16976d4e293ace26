"""``Simulator(graph_steps=K)``: chunks of steps replayed as CUDA graphs give the plain engine's results.

On the CPU the chunks run eagerly through the same code as the captured ones (static inputs, records
and state), so the chunked loop is checked here for every kind of network: encoders that read the
step within the presentation, rules with epochs and ``u`` periods, ties, gates, driven traces, third
factors, masks, per-replica weights. A second check runs a chunk under a guard that fails on anything
a CUDA graph capture cannot hold (a copy from the host, a synchronising read). On a GPU (``-m gpu``)
the graphs are captured and replayed for real.
"""
import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from neuro import (IAF, LIF, LatencyEncoder, LearningRule, Network, PoissonEncoder, Population, RegularEncoder,
                   Simulator, Trace, random_mask)
from neuro.expr import Param, d, softmax, t, u, w, x0, x1, y0, y1
from neuro.standard_rules import reward_modulated_stdp, stdp
from networks import softhebb
from networks.pc_spiking import SpikingPCConfig, build_spiking
from networks.softhebb import SoftHebbConfig, SpikingConfig


def _stdp_poisson():
    net = Network(dt=1e-3)
    net.input("inp", 30, PoissonEncoder(max_rate=200.0))
    net.population("out", 20, LIF(tau_mem=20e-3, tau_syn=5e-3))
    net.connect("inp", "out", np.random.default_rng(0).uniform(0, 0.5, (20, 30)),
                rule=stdp(a_plus=0.02, a_minus=0.021, t_epoch=2), name="ff")
    return net, {"inp": torch.rand(3, 30, generator=torch.Generator().manual_seed(0))}, {}


def _tag_delay_masked_per_replica():
    rule = LearningRule(dw=0.02 * y0 * x1 - 0.021 * x0 * y1 + 0.01 * u * t * (0.5 - w),
                        dt=0.1 * y0 * x1 - 0.02 * u * t, dd=0.05 * x0 * y1 - 0.03 * y0 * x1 * d,
                        traces={"x1": Trace(1.0, 20e-3), "y1": Trace(1.0, 10e-3)}, t_epoch=2, u_exponent=1,
                        w_min=0.0, w_max=1.0)
    mask = random_mask(20, 30, 0.4, seed=2)
    net = Network(dt=1e-3)
    net.input("inp", 30)
    net.population("out", 20, LIF(tau_mem=20e-3, tau_syn=5e-3, v_th=0.5))
    net.connect("inp", "out", np.random.default_rng(1).uniform(0, 0.9, (3, 20, 30)) * mask, rule=rule, mask=mask,
                name="ff")
    net.connect("out", "out", -0.2 * random_mask(20, 20, 0.2, seed=1, autapses=False), name="rec")
    spikes = (torch.rand(64, 3, 30, generator=torch.Generator().manual_seed(3)) < 0.1).double()
    return net, {"inp": spikes}, {}


def _softmax_latency_iaf():
    rule = LearningRule(dw=Param("eta") * y0 * x1 * softmax(w, 1.0) - 0.01 * x0 * y1,
                        traces={"x1": Trace(1.0, 20e-3), "y1": Trace(1.0, 20e-3)}, params={"eta": 0.05},
                        w_min=0.0, w_max=1.0)
    net = Network(dt=1e-3)
    net.input("inp", 16, LatencyEncoder(window=12))
    net.population("out", 10, LIF(tau_mem=10e-3, v_th=0.3, theta_plus=0.05, tau_theta=50e-3))
    net.population("inh", 1, IAF(v_th=0.5))
    net.connect("inp", "out", np.random.default_rng(4).uniform(0, 0.6, (10, 16)), rule=rule, name="ff")
    net.connect("out", "inh", np.ones((1, 10)), name="to_inh")
    net.connect("inh", "out", -0.5 * np.ones((10, 1)), name="from_inh")
    return net, {"inp": torch.rand(3, 16, generator=torch.Generator().manual_seed(5))}, {}


def _third_factor():
    net = Network(dt=1e-3)
    net.input("inp", 12, RegularEncoder(max_rate=300.0))
    net.population("out", 6, LIF(tau_mem=10e-3, v_th=0.4))
    net.connect("inp", "out", np.random.default_rng(6).uniform(0, 0.5, (6, 12)),
                rule=reward_modulated_stdp(learning_rate=0.05), name="ff")
    reward = torch.randn(64, 3, 6, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    return net, {"inp": torch.rand(12, generator=torch.Generator().manual_seed(8))}, {"out": reward}


def _spiking_pc():
    cfg = SpikingPCConfig(hidden=(8,), steps=16, test_steps=16, batch=3)
    net = build_spiking(10, 3, cfg)
    g = torch.Generator().manual_seed(9)
    inputs = {"x0": torch.rand(3, 10, generator=g), "bias": torch.ones(3, 1), "y": torch.eye(3)}
    return net, inputs, {}


def _softhebb_spiking():
    net = softhebb.build_spiking(16, SoftHebbConfig(n_neurons=12, seed=1), SpikingConfig(), adaptive=True)
    return net, {"pixels": torch.rand(3, 16, generator=torch.Generator().manual_seed(10))}, {}


NETWORKS = {f.__name__[1:]: f for f in (_stdp_poisson, _tag_delay_masked_per_replica, _softmax_latency_iaf,
                                         _third_factor, _spiking_pc, _softhebb_spiking)}


def _monitors(net):
    plastic = [p.name for p in net.projections.values() if p.rule is not None]
    pops = [p for p in net.populations]
    return [f"{p}.spikes" for p in pops] + [f"{p}.count" for p in pops] + [f"{plastic[0]}.w"]


def _window(values, start, stop):
    """Steps ``start:stop`` of the per-step values ``(64, R, N)``; held values as they are."""
    return {k: (v[start:stop] if v.dim() == 3 else v) for k, v in values.items()}


def _simulate(net, inputs, factors, graph_steps, device="cpu", steps=(64, 37), every=2, seed=1):
    sim = Simulator(net, replicas=3, dtype=torch.float64, graph_steps=graph_steps, seed=seed, device=device)
    recs = [sim.run(n, _window(inputs, 0, n), _window(factors, 0, n), monitors=_monitors(net), every=every)
            for n in steps]
    return recs, sim


def _assert_same(a, b, rtol=0.0):
    (recs_a, sim_a), (recs_b, sim_b) = a, b
    for ra, rb in zip(recs_a, recs_b):
        assert ra.data.keys() == rb.data.keys()
        for m in ra.data:
            assert ra.steps[m] == rb.steps[m], m
            torch.testing.assert_close(ra[m].cpu(), rb[m].cpu(), rtol=rtol, atol=rtol, msg=m)
    sa, sb = sim_a.state_dict(), sim_b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        if k != "rng_state":
            np.testing.assert_allclose(sa[k], sb[k], rtol=rtol, atol=rtol, err_msg=k)
    assert sim_a.time_step == sim_b.time_step


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_chunked_runs_match_the_plain_engine(name):
    net, inputs, factors = NETWORKS[name]()
    plain = _simulate(net, inputs, factors, 0)
    chunked = _simulate(net, inputs, factors, 8)
    rec = plain[0][0]
    plastic = _monitors(net)[-1]
    assert sum(rec[f"{p}.spikes"].sum() for p, pop in net.populations.items() if isinstance(pop, Population)) > 0
    assert not torch.equal(rec[plastic][0], rec[plastic][-1])  # it spikes and learns
    _assert_same(plain, chunked)
    # runs of 64 and 37 steps share their chunks (64: 8 or 4 chunks, 37: 4 or 2): each kind made once
    assert len(chunked[1]._graphs.chunks) == 1 and next(iter(chunked[1]._graphs.chunks.values())).runs > 4


def test_chunk_length_is_rounded_to_the_learning_period_and_records():
    net, inputs, _ = _spiking_pc()  # u_exponent 4: the rule applies every 16 steps
    sim = Simulator(net, replicas=3, graph_steps=10)
    assert sim._graphs.period == 16
    assert sim._graphs.chunk_length(1) == 16 and sim._graphs.chunk_length(5) == 80
    with pytest.raises(ValueError, match="graph_steps must be a non-negative integer"):
        Simulator(net, graph_steps=-1)
    with pytest.raises(ValueError, match="graph_steps must be a non-negative integer"):
        Simulator(net, graph_steps=True)
    with pytest.raises(ValueError, match="event_driven=True cannot run in CUDA graphs"):
        Simulator(net, graph_steps=8, event_driven=True)
    with pytest.raises(ValueError, match="makes a CUDA graph of each step"):
        Simulator(net, graph_steps=8, compile="reduce-overhead")


def test_state_changed_between_runs_reaches_the_graphs():
    """Whatever replaces the state between chunks (set_weights, reset, an assignment, eager steps)
    is what the next chunk starts from."""
    def drive(sim):
        out = []
        x = {"inp": torch.rand(3, 30, generator=torch.Generator().manual_seed(0))}
        out.append(sim.run(16, x, monitors=["out.count"], every=16)["out.count"])
        sim.set_weights("ff", np.full((20, 30), 0.3))
        out.append(sim.run(16, x, monitors=["out.count", "ff.w"], every=8)["out.count"])
        sim.state["out"]["v"] = torch.full((3, 20), 0.9, dtype=torch.float64)
        sim.step(x)
        out.append(sim.run(16, x, monitors=["out.count"], every=16)["out.count"])
        sim.learning = False
        out.append(sim.run(16, x, monitors=["out.count"], every=16)["out.count"])
        sim.learning = True
        sim.reset()
        out.append(sim.run(32, x, monitors=["out.count"], every=16)["out.count"])
        return out, sim.weights("ff")

    net = _stdp_poisson()[0]
    plain = drive(Simulator(net, replicas=3, dtype=torch.float64, seed=2))
    chunked = drive(Simulator(net, replicas=3, dtype=torch.float64, seed=2, graph_steps=8))
    for a, b in zip(plain[0], chunked[0]):
        assert torch.equal(a, b)
    assert torch.equal(plain[1], chunked[1])
    assert plain[1].max() != 0.3  # it learned after set_weights


def test_count_monitor_sums_spikes_between_records():
    net, inputs, _ = _stdp_poisson()
    sim = Simulator(net, replicas=3, seed=1)
    rec = sim.run(30, inputs, monitors=["out.spikes", "out.count"], every=10)
    sim2 = Simulator(net, replicas=3, seed=1)
    every_step = sim2.run(30, inputs, monitors=["out.spikes"])["out.spikes"]
    assert rec["out.count"].shape == (3, 3, 20) and rec.steps["out.count"] == [10, 20, 30]
    torch.testing.assert_close(rec["out.count"], every_step.reshape(3, 10, 3, 20).sum(1))
    assert rec["out.count"].sum() > 0
    torch.testing.assert_close(rec["out.spikes"], every_step[9::10])
    with pytest.raises(KeyError, match="cannot monitor 'nope.count'"):
        sim.run(3, inputs, monitors=["nope.count"])
    with pytest.raises(ValueError, match="every must be a positive integer"):
        sim.run(3, inputs, monitors=["out.count"], every=0)


class _CaptureGuard(TorchFunctionMode):
    """Fails on what a CUDA graph capture cannot hold: tensors made from host data for a device (a copy
    from the host), and reads that wait for the device (``item``, ``nonzero``, ``bool`` ...)."""

    FACTORIES = {torch.tensor, torch.as_tensor, torch.asarray}
    SYNCS = {"item", "tolist", "numpy", "cpu", "nonzero", "__bool__", "__int__", "__float__", "any_", "unique"}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.FACTORIES and args and not isinstance(args[0], torch.Tensor) and kwargs.get("device"):
            raise AssertionError(f"{func.__name__}({args[0]!r}, device=...) inside a chunk: a copy from the host")
        if getattr(func, "__name__", "") in self.SYNCS:
            raise AssertionError(f"{func.__name__} inside a chunk: it waits for the device")
        return func(*args, **kwargs)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_chunks_are_capturable(name, monkeypatch):
    """After the first chunk (which fills lazily made constants), a chunk's steps neither copy from
    the host nor wait for the device: what capturing them into a CUDA graph requires."""
    net, inputs, factors = NETWORKS[name]()
    sim = Simulator(net, replicas=3, graph_steps=16, seed=1)
    sim.run(16, _window(inputs, 0, 16), _window(factors, 0, 16), monitors=_monitors(net), every=4)
    steps = sim._graphs._steps

    def guarded(chunk):
        with _CaptureGuard():
            steps(chunk)

    monkeypatch.setattr(sim._graphs, "_steps", guarded)
    sim.run(16, _window(inputs, 16, 32), _window(factors, 16, 32), monitors=_monitors(net), every=4)
    # the guard itself works
    with pytest.raises(AssertionError, match="copy from the host"), _CaptureGuard():
        torch.tensor(1.0, device="cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_cuda_graphs_match_eager_steps_on_the_gpu(name):
    net, inputs, factors = NETWORKS[name]()
    inputs = {k: v.cuda() for k, v in inputs.items()}
    factors = {k: v.cuda() for k, v in factors.items()}
    plain = _simulate(net, inputs, factors, 0, device="cuda")
    graphs = _simulate(net, inputs, factors, 8, device="cuda")
    assert all(c.graph is not None for c in graphs[1]._graphs.chunks.values())
    _assert_same(plain, graphs, rtol=1e-9)


CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                        reason="needs CUDA")])


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_weights_set_outside_the_bounds_are_clipped_as_by_plain_steps(device):
    """A rule without ``dw`` clips the weights only at the first epoch after they were set: a chunk then
    runs eagerly. With ``dw`` every dense epoch clips them all, so the captured steps do it too."""
    def drive(graph_steps, rule):
        net = Network(dt=1e-3)
        net.input("inp", 10)
        net.population("out", 5, LIF(v_th=0.3))
        net.connect("inp", "out", np.full((5, 10), 0.1), rule=rule, name="ff")
        sim = Simulator(net, replicas=2, dtype=torch.float64, graph_steps=graph_steps, device=device)
        spikes = (torch.rand(32, 2, 10, generator=torch.Generator().manual_seed(0)) < 0.3).double().to(device)
        for _ in range(2):  # the second time, the chunk has its graph
            sim.run(16, {"inp": spikes[:16]})
            sim.set_weights("ff", np.full((5, 10), 2.0))  # above w_max
            sim.run(16, {"inp": spikes[16:]})
        return sim.weights("ff"), sim.syn["ff"].get("t")

    tag_only = LearningRule(dt=0.1 * y0 * x1, traces={"x1": Trace(1.0, 20e-3)}, w_min=0.0, w_max=1.0)
    for rule in (stdp(a_plus=0.02, a_minus=0.021, w_max=1.0), tag_only):
        plain, chunked = drive(0, rule), drive(8, rule)
        assert plain[0].max() <= 1.0
        torch.testing.assert_close(chunked[0], plain[0], rtol=0, atol=0)
        if plain[1] is not None:
            torch.testing.assert_close(chunked[1], plain[1], rtol=0, atol=0)


def test_a_failed_capture_leaves_the_simulator_as_it_was_and_runs_eagerly(monkeypatch):
    """A capture that fails halfway (here: the first step raises, as a CUDA error during capture would)
    puts the step counter, the generator and the state back, warns, and the chunks run eagerly."""
    import contextlib

    import neuro.cuda_graphs as cg

    net, inputs, _ = _stdp_poisson()
    plain = Simulator(net, replicas=3, dtype=torch.float64, seed=1)
    sim = Simulator(net, replicas=3, dtype=torch.float64, seed=1, graph_steps=8)

    class FakeGraph:
        def register_generator_state(self, generator):
            pass

    capturing = []
    advance = sim._advance

    def failing_advance(*args):
        if capturing:
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing")
        return advance(*args)

    @contextlib.contextmanager
    def fake_capture(graph):
        capturing.append(True)
        try:
            yield
        finally:
            capturing.clear()

    monkeypatch.setattr(cg.torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(cg.torch.cuda, "graph", fake_capture)
    monkeypatch.setattr(sim, "_advance", failing_advance)
    sim._graphs.capture = True
    monkeypatch.setattr(sim._graphs, "_eager", sim._graphs._steps)  # no CUDA streams on the CPU
    with pytest.warns(RuntimeWarning, match="capturing 8 steps as a CUDA graph failed .*not permitted"):
        got = sim.run(40, inputs, monitors=["out.count", "ff.w"], every=4)
    want = plain.run(40, inputs, monitors=["out.count", "ff.w"], every=4)
    for m in want.data:
        torch.testing.assert_close(got[m], want[m], rtol=0, atol=0)
    assert sim.time_step == plain.time_step == 40
    chunk = next(iter(sim._graphs.chunks.values()))
    assert chunk.graph is None and "not permitted" in chunk.failed and chunk.runs == 5


def test_chunks_take_state_as_plain_steps_do():
    """What a user assigns between runs reaches the chunks as it reaches plain steps: another dtype or a
    shape that broadcasts over the replicas, two tensors swapped, a monitor named twice."""
    net, inputs, _ = _stdp_poisson()

    def drive(graph_steps):
        sim = Simulator(net, replicas=3, dtype=torch.float64, graph_steps=graph_steps, seed=2)
        out = [sim.run(16, inputs, monitors=["out.v", "out.v", "out.count", "out.count"], every=8)]
        sim.state["out"]["v"] = torch.full((20,), 0.3, dtype=torch.float32)  # one row for every replica
        sim.state["out"]["i"], sim.state["out"]["v"] = sim.state["out"]["v"], sim.state["out"]["i"]  # swapped
        out.append(sim.run(16, inputs, monitors=["out.v", "out.count"], every=8))
        assert sim.state["out"]["v"].dtype == torch.float64 and sim.state["out"]["v"].shape == (3, 20)
        return out

    for a, b in zip(drive(0), drive(8)):
        assert a.data.keys() == b.data.keys() and a["out.v"].shape[0] == 2  # each monitor recorded once
        for m in a.data:
            torch.testing.assert_close(b[m], a[m], rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_regular_encoder_counts_steps_alike_in_chunks(dtype):
    """A chunk hands encoders the step number as a tensor: half types must not round it (301 -> 300)."""
    net = Network(dt=1e-3)
    net.input("inp", 50, RegularEncoder(max_rate=300.0))
    net.population("out", 2, LIF())
    net.connect("inp", "out", np.zeros((2, 50)), name="ff")
    x = {"inp": torch.rand(50, generator=torch.Generator().manual_seed(1))}
    runs = [Simulator(net, dtype=dtype, graph_steps=g).run(400, x, monitors=["inp.spikes"])["inp.spikes"]
            for g in (0, 50)]
    assert torch.equal(runs[0], runs[1]) and runs[0].sum() > 1000
