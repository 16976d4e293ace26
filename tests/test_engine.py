"""The torch engine: agreement with Norse's STDP, replicas, determinism, errors."""
import math

import numpy as np
import pytest
import torch
from norse.torch.functional.stdp import STDPParameters, STDPState, stdp_step_linear

from neuro import LIF, IAF, LearningRule, Network, PoissonEncoder, Simulator, Trace, standard_rules, u
from neuro.plasticity import CompiledRule, initial_plastic_state

DT = 1e-3


def norse_equivalent_rule(tau_pre_inv, tau_post_inv, a_pre, a_post, eta_plus, eta_minus, w_max, multiplicative):
    """Our STDP with traces that follow Norse's Euler decay t <- t + dt/tau (-t + a z) exactly."""
    rule = standard_rules.stdp(
        a_plus=eta_plus,
        a_minus=eta_minus,
        # exp(-dt / tau) == 1 - dt / tau_norse, and the impulse is dt / tau_norse * a
        tau_plus=-DT / math.log(1 - DT * tau_pre_inv),
        tau_minus=-DT / math.log(1 - DT * tau_post_inv),
        w_min=0.0,
        w_max=w_max,
        multiplicative=multiplicative,
    )
    traces = {"x1": Trace(DT * tau_pre_inv * a_pre, rule.traces["x1"].tau), "y1": Trace(DT * tau_post_inv * a_post, rule.traces["y1"].tau)}
    return LearningRule(dw=rule.dw, traces=traces, w_min=rule.w_min, w_max=rule.w_max, params=rule.params, name=rule.name)


@pytest.mark.parametrize("algorithm", ["additive", "multiplicative_relu"])
def test_rule_language_stdp_matches_norse_stdp_on_the_same_spike_trains(algorithm):
    torch.manual_seed(0)
    steps, batch, n_pre, n_post = 400, 4, 12, 7
    z_pre = (torch.rand(steps, batch, n_pre, dtype=torch.float64) < 0.08).double()
    z_post = (torch.rand(steps, batch, n_post, dtype=torch.float64) < 0.05).double()
    w0 = torch.rand(n_post, n_pre, dtype=torch.float64) * 0.5 + 0.25
    p = STDPParameters(
        a_pre=torch.tensor(1.0, dtype=torch.float64),
        a_post=torch.tensor(1.2, dtype=torch.float64),
        tau_pre_inv=torch.tensor(1 / 20e-3, dtype=torch.float64),
        tau_post_inv=torch.tensor(1 / 30e-3, dtype=torch.float64),
        w_min=0.0,
        w_max=1.0,
        eta_plus=0.3,
        eta_minus=0.25,
        stdp_algorithm=algorithm,
        hardbound=True,
    )
    state = STDPState(torch.zeros(batch, n_pre, dtype=torch.float64), torch.zeros(batch, n_post, dtype=torch.float64))
    rule = norse_equivalent_rule(
        1 / 20e-3, 1 / 30e-3, 1.0, 1.2, 0.3, 0.25, 1.0, multiplicative=(algorithm != "additive")
    )
    compiled = CompiledRule(rule, DT)
    st = initial_plastic_state(batch, n_pre, n_post, torch.float64, torch.device("cpu"))
    syn = {"w": w0.clone()[None]}
    params = {k: torch.tensor(v, dtype=torch.float64) for k, v in rule.params.items()}
    w_norse = w0.clone()
    worst = 0.0
    for k in range(steps):
        w_norse, state = stdp_step_linear(z_pre[k], z_post[k], w_norse, state, p, dt=DT)
        compiled.record(st, z_pre[k], z_post[k], 1, {})
        compiled.learn(st, syn, params, k + 1)
        worst = max(worst, (syn["w"][0] - w_norse).abs().max().item())
    assert worst < 1e-5
    # The traces themselves agree too (x1 = Norse's t_pre).
    assert torch.allclose(st["x"][:, 0], state.t_pre, atol=1e-12)
    # ... and the comparison is not vacuous: the weights moved.
    assert (w_norse - w0).abs().max() > 0.05


def stdp_network(replicas=1, weights=None, rule=None, n_in=30, n_out=8, seed=0):
    net = Network(dt=DT)
    net.input("inp", n_in, encoder=PoissonEncoder(max_rate=80.0))
    net.population("out", n_out, LIF(tau_mem=20e-3, tau_syn=5e-3, v_th=1.0))
    if weights is None:
        weights = np.random.default_rng(seed).uniform(0.0, 0.6, (n_out, n_in))
    net.connect("inp", "out", weights, rule=rule or standard_rules.stdp(a_plus=0.02, a_minus=0.021), name="ff")
    return net


def test_engine_stdp_matches_norse_when_replayed_on_the_engines_own_spikes():
    """End to end: the network's weight trajectory equals Norse's STDP replayed on its spikes."""
    tau_inv = 1 / 20e-3
    rule = norse_equivalent_rule(tau_inv, tau_inv, 1.0, 1.0, 0.02, 0.021, 1.0, multiplicative=False)
    net = stdp_network(replicas=3, rule=rule)
    sim = Simulator(net, replicas=3, dtype=torch.float64, seed=3)
    rates = torch.rand(3, 30, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rec = sim.run(500, inputs={"inp": rates}, monitors=["inp.spikes", "out.spikes", "ff.w"])
    assert rec["out.spikes"].sum() > 20
    p = STDPParameters(
        a_pre=torch.tensor(1.0), a_post=torch.tensor(1.0), tau_pre_inv=torch.tensor(tau_inv),
        tau_post_inv=torch.tensor(tau_inv), eta_plus=0.02, eta_minus=0.021, w_min=0.0, w_max=1.0,
    )
    w_norse = torch.as_tensor(net.projections["ff"].weights)
    state = STDPState(torch.zeros(3, 30, dtype=torch.float64), torch.zeros(3, 8, dtype=torch.float64))
    for k in range(500):
        w_norse, state = stdp_step_linear(rec["inp.spikes"][k], rec["out.spikes"][k], w_norse, state, p, dt=DT)
        assert torch.allclose(rec["ff.w"][k, 0], w_norse, atol=1e-5), f"step {k + 1}"


def test_replicas_are_independent_copies():
    """Replica r of a batched run equals a single run with replica r's weights and inputs."""
    rng = np.random.default_rng(5)
    w = rng.uniform(0, 0.6, (4, 8, 30))
    spikes = (rng.random((200, 4, 30)) < 0.1).astype(np.float64)
    net = Network(dt=DT)
    net.input("inp", 30)
    net.population("out", 8, LIF(tau_mem=20e-3))
    net.connect("inp", "out", w, rule=standard_rules.stdp(a_plus=0.02), name="ff")
    batched = Simulator(net, replicas=4, dtype=torch.float64).run(200, {"inp": spikes}, monitors=["out.spikes", "ff.w"])
    for r in (0, 3):
        single_net = Network(dt=DT)
        single_net.input("inp", 30)
        single_net.population("out", 8, LIF(tau_mem=20e-3))
        single_net.connect("inp", "out", w[r], rule=standard_rules.stdp(a_plus=0.02), name="ff")
        single = Simulator(single_net, dtype=torch.float64).run(200, {"inp": spikes[:, r]}, monitors=["out.spikes", "ff.w"])
        assert torch.equal(batched["out.spikes"][:, r], single["out.spikes"][:, 0])
        assert torch.allclose(batched["ff.w"][:, r], single["ff.w"][:, 0], atol=1e-12)
    # Different replicas did different things.
    assert not torch.equal(batched["ff.w"][-1, 0], batched["ff.w"][-1, 3])


def test_per_replica_parameter_sweep():
    net = stdp_network(weights=np.full((4, 8, 30), 0.3))
    sim = Simulator(net, replicas=4, dtype=torch.float64)
    sim.set_param("ff", "a_plus", [0.0, 0.01, 0.02, 0.04])
    sim.set_param("ff", "a_minus", 0.0)
    sim.run(300, {"inp": torch.full((30,), 0.5)})
    growth = (sim.weights("ff") - 0.3).sum(dim=(1, 2))
    assert growth[0] == 0
    assert growth[1] > 0 and growth[2] > growth[1] and growth[3] > growth[2]
    with pytest.raises(KeyError, match="no rule parameter 'eta'"):
        sim.set_param("ff", "eta", 1.0)
    with pytest.raises(ValueError, match="give 1 or 4 values"):
        sim.set_param("ff", "a_plus", [1.0, 2.0])


def test_same_seed_same_run_and_different_seed_different_run():
    def run(seed):
        sim = Simulator(stdp_network(), replicas=2, seed=seed)
        return sim.run(200, {"inp": torch.full((30,), 0.4)}, monitors=["out.spikes", "ff.w"])

    a, b, c = run(7), run(7), run(8)
    assert torch.equal(a["out.spikes"], b["out.spikes"]) and torch.equal(a["ff.w"], b["ff.w"])
    assert not torch.equal(a["out.spikes"], c["out.spikes"])


def test_one_step_synaptic_delay_and_lif_dynamics():
    """A pre spike at step k moves the post current at step k + 1 (Lava's Dense timing)."""
    net = Network(dt=DT)
    net.input("inp", 1)
    net.population("out", 1, LIF(tau_mem=10e-3, tau_syn=5e-3, v_th=100.0))
    net.connect("inp", "out", [[2.0]])
    sim = Simulator(net, dtype=torch.float64)
    spikes = torch.zeros(5, 1)
    spikes[1] = 1.0  # step 2
    rec = sim.run(5, {"inp": spikes}, monitors=["out.v", "out.i"])
    v = rec["out.v"][:, 0, 0]
    i = rec["out.i"][:, 0, 0]
    assert v[0] == 0 and v[1] == 0  # steps 1, 2: nothing arrived yet
    assert v[2] == pytest.approx(DT / 10e-3 * 2.0)  # step 3: i_new = 2, v += dt/tau_mem * i_new
    assert i[2] == pytest.approx(2.0 * (1 - DT / 5e-3))


def test_iaf_integrates_without_leak():
    net = Network(dt=DT)
    net.input("inp", 1)
    net.population("out", 1, IAF(v_th=2.5))
    net.connect("inp", "out", [[1.0]])
    rec = Simulator(net).run(6, {"inp": torch.ones(6, 1)}, monitors=["out.spikes", "out.v"])
    assert rec["out.spikes"][:, 0, 0].tolist() == [0, 0, 0, 1, 0, 0]


def test_adaptive_threshold_reduces_rate():
    def rate(theta_plus):
        net = Network(dt=DT)
        net.input("inp", 1)
        net.population("out", 1, LIF(tau_mem=10e-3, theta_plus=theta_plus, tau_theta=1.0))
        net.connect("inp", "out", [[3.0]])
        return Simulator(net).run(300, {"inp": torch.ones(300, 1)}, monitors=["out.spikes"])["out.spikes"].sum()

    assert rate(0.2) < 0.5 * rate(0.0)


def test_epoch_semantics_learn_only_at_epoch_ends():
    rule = standard_rules.stdp(a_plus=0.05, a_minus=0.05, t_epoch=5)
    net = stdp_network(rule=rule)
    rec = Simulator(net).run(40, {"inp": torch.full((30,), 0.8)}, monitors=["ff.w"])
    changes = [k + 1 for k in range(1, 40) if not torch.equal(rec["ff.w"][k], rec["ff.w"][k - 1])]
    assert changes and all(s % 5 == 0 for s in changes)


def test_u_dependency_and_decimation():
    # dw = 0.1 * u: every epoch whose index is a multiple of 2**2 adds 0.1.
    rule = LearningRule(dw=0.1 * u, t_epoch=2, u_exponent=2)
    net = Network(dt=DT)
    net.input("inp", 2)
    net.population("out", 1)
    net.connect("inp", "out", 0.0, rule=rule)
    sim = Simulator(net, dtype=torch.float64)
    sim.run(32)  # epochs 1..16 end at steps 2..32; indices 4, 8, 12, 16 count
    assert sim.weights("inp_to_out")[0, 0].item() == pytest.approx(0.4)


def test_third_factor_drives_y2():
    rule = standard_rules.modulated_stdp(a_plus=0.05, a_minus=0.0)
    outs = []
    for reward in (1.0, -1.0, 0.0):
        net = stdp_network(rule=rule)
        sim = Simulator(net, seed=0)
        sim.run(200, {"inp": torch.full((30,), 0.6)}, third_factors={"out": torch.full((8,), reward)})
        outs.append((sim.weights("ff") - torch.as_tensor(net.projections["ff"].weights, dtype=torch.float32)).sum().item())
    assert outs[0] > 0 and outs[1] < 0 and outs[2] == 0


def test_bad_inputs_give_clear_errors():
    net = stdp_network()
    sim = Simulator(net, replicas=2)
    with pytest.raises(ValueError, match=r"input 'inp': expected shape \(30,\) or \(2, 30\)"):
        sim.run(10, {"inp": torch.zeros(29)})
    with pytest.raises(KeyError, match="unknown input population 'pixels'"):
        sim.run(10, {"pixels": torch.zeros(30)})
    with pytest.raises(KeyError, match="cannot monitor 'out.voltage'"):
        sim.run(10, monitors=["out.voltage"])
    with pytest.raises(ValueError, match="NaN"):
        sim.set_weights("ff", torch.full((8, 30), float("nan")))
    with pytest.raises(ValueError, match=r"weights must have shape \(post, pre\) = \(8, 30\)"):
        net.connect("inp", "out", np.zeros((30, 8)), name="bad")
    with pytest.raises(ValueError, match="NaN"):
        net.connect("inp", "out", np.full((8, 30), np.nan), name="bad")
    with pytest.raises(ValueError, match="unknown pre population"):
        net.connect("nope", "out", 0.0)
    with pytest.raises(ValueError, match="input population and cannot receive"):
        net.connect("out", "inp", 0.0)
    with pytest.raises(ValueError, match="has weights for 3 replicas"):
        Simulator(stdp_network(weights=np.zeros((3, 8, 30))), replicas=2)
    plain = Network(dt=DT)
    plain.input("inp", 4)
    with pytest.raises(ValueError, match=r"spikes must have shape \(steps=10, N\)"):
        Simulator(plain).run(10, {"inp": torch.zeros(4)})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    net = stdp_network()
    spikes = (torch.rand(300, 2, 30, generator=torch.Generator().manual_seed(0)) < 0.1).double()
    # Same code on both devices; identical explicit spikes give identical results.
    results = []
    for device in ("cpu", "cuda"):
        plain = Network(dt=DT)
        plain.input("inp", 30)
        plain.population("out", 8, LIF(tau_mem=20e-3))
        plain.connect("inp", "out", net.projections["ff"].weights, rule=standard_rules.stdp(a_plus=0.02), name="ff")
        sim = Simulator(plain, replicas=2, device=device, dtype=torch.float64)
        rec = sim.run(300, {"inp": spikes}, monitors=["out.spikes", "ff.w"])
        results.append({k: v.cpu() for k, v in rec.data.items()})
    assert torch.equal(results[0]["out.spikes"], results[1]["out.spikes"])
    assert torch.allclose(results[0]["ff.w"], results[1]["ff.w"], atol=1e-12)


def test_state_from_another_generator_device_is_refused_clearly():
    sim = Simulator(stdp_network())
    state = sim.state_dict()
    state["rng_state"] = state["rng_state"][:16]  # a CUDA generator's state is 16 bytes
    with pytest.raises(ValueError, match="another device type"):
        Simulator(stdp_network()).load_state_dict(state)


def test_state_dicts_are_snapshots_and_loaded_state_is_not_shared():
    """A state dict does not follow the simulator, and two simulators loaded from one state are independent."""
    net = Network(dt=1e-3)
    net.input("pre", 8, encoder=PoissonEncoder(200.0))
    net.population("post", 4, LIF(tau_mem=10e-3, tau_syn=5e-3, v_th=0.3))
    net.connect("pre", "post", np.full((4, 8), 0.2), rule=standard_rules.stdp(), name="ff")
    first = Simulator(net, dtype=torch.float64, seed=0)
    first.run(20, {"pre": torch.full((8,), 0.8)})
    snapshot = first.state_dict()
    frozen = {k: np.array(v, copy=True) for k, v in snapshot.items()}
    second = Simulator(net, dtype=torch.float64, seed=0)
    second.load_state_dict(snapshot)
    second.run(20, {"pre": torch.full((8,), 0.8)})
    for k, v in first.state_dict().items():
        np.testing.assert_array_equal(v, frozen[k], err_msg=k)  # the second run left the first alone
        np.testing.assert_array_equal(snapshot[k], frozen[k], err_msg=k)
    assert not np.array_equal(second.state_dict()["plasticity/ff/x"], frozen["plasticity/ff/x"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_event_driven_and_compiled_steps_match_dense():
    """On the GPU: event-driven steps (atomic adds: equal to rounding), compiled steps and compiled steps
    in CUDA graphs give the dense engine's spikes and weights."""
    spikes = (torch.rand(300, 2, 30, generator=torch.Generator().manual_seed(0)) < 0.1).double().cuda()
    net = stdp_network()
    plain = Network(dt=DT)
    plain.input("inp", 30)
    plain.population("out", 8, LIF(tau_mem=20e-3))
    plain.connect("inp", "out", net.projections["ff"].weights, rule=standard_rules.stdp(a_plus=0.02), name="ff")
    with pytest.raises(ValueError, match="graph_steps=K"):
        Simulator(plain, device="cuda", compile="reduce-overhead")
    runs = {}
    for name, kwargs in {"dense": dict(event_driven=False), "event": dict(event_driven=True),
                         "compiled": dict(compile=True), "graphs": dict(compile=True, graph_steps=50)}.items():
        sim = Simulator(plain, replicas=2, device="cuda", dtype=torch.float64, **kwargs)
        rec = sim.run(300, {"inp": spikes}, monitors=["out.spikes", "ff.w"])
        runs[name] = {k: v.cpu() for k, v in rec.data.items()}
    assert runs["dense"]["out.spikes"].sum() > 20
    for name in ("event", "compiled", "graphs"):
        assert torch.equal(runs[name]["out.spikes"], runs["dense"]["out.spikes"]), name
        assert torch.allclose(runs[name]["ff.w"], runs["dense"]["ff.w"], atol=1e-9), name


def _regular_net():
    from neuro import RegularEncoder

    net = Network(dt=1e-3)
    net.input("a", 5, RegularEncoder(max_rate=400.0))
    net.population("b", 4, LIF(tau_mem=10e-3, tau_syn=20e-3, v_th=0.2))
    net.connect("a", "b", np.random.default_rng(5).uniform(0.0, 0.5, (4, 5)), name="ab")
    return net, {"a": np.array([0.9, 0.7, 0.45, 0.3, 0.15])}


def test_a_run_goes_on_from_first_step():
    """Two runs, the second from ``first_step=30``, are one run of 50 steps (the encoders' spike times
    go on); starting the second again at step 0 is not (the regular spikes restart)."""
    net, inputs = _regular_net()
    whole = Simulator(net, dtype=torch.float64).run(50, inputs, monitors=["a.spikes", "b.v"])
    sim = Simulator(net, dtype=torch.float64)
    parts = sim.run(30, inputs, monitors=["a.spikes", "b.v"]).then(
        sim.run(20, inputs, monitors=["a.spikes", "b.v"], first_step=30))
    assert parts.steps == whole.steps
    for m in ("a.spikes", "b.v"):
        assert torch.equal(parts[m], whole[m]), m
    sim = Simulator(net, dtype=torch.float64)
    sim.run(30, inputs)
    restarted = sim.run(20, inputs, monitors=["a.spikes"])
    assert not torch.equal(restarted["a.spikes"], whole["a.spikes"][30:])
    with pytest.raises(ValueError, match="first_step must be a non-negative integer"):
        sim.run(5, inputs, first_step=-1)
    with pytest.raises(ValueError, match="then: the recordings monitor"):
        whole.then(restarted)


def test_set_model_swaps_a_populations_dynamics_and_keeps_its_state():
    """``set_model`` changes how a population steps from then on (here: its current stops decaying),
    keeps the state, leaves the network and other simulators alone, and refuses what it cannot do."""
    net, inputs = _regular_net()
    sim = Simulator(net, dtype=torch.float64)
    other = Simulator(net, dtype=torch.float64)
    sim.run(40, inputs)
    other.run(40, inputs)
    i_before = sim.state["b"]["i"].clone()
    assert (i_before > 0.05).all()
    from dataclasses import replace

    sim.set_model("b", replace(net.populations["b"].model, syn_leak="none"))
    sim.run(10)  # no input: the current is held
    other.run(10)
    assert torch.equal(sim.state["b"]["i"], i_before)
    torch.testing.assert_close(other.state["b"]["i"], i_before * (1 - 1e-3 / 20e-3) ** 10, rtol=1e-12, atol=0)
    assert net.populations["b"].model.syn_leak == "both"
    sim.set_model("b", net.populations["b"].model)
    sim.run(10)
    torch.testing.assert_close(sim.state["b"]["i"], i_before * (1 - 1e-3 / 20e-3) ** 10, rtol=1e-12, atol=0)
    with pytest.raises(KeyError, match="unknown population 'c'"):
        sim.set_model("c", LIF())
    with pytest.raises(ValueError, match="'a' is an input population"):
        sim.set_model("a", LIF())
    with pytest.raises(TypeError, match="network's model is a LIF, got a IAF"):
        sim.set_model("b", IAF())
    with pytest.raises(ValueError, match="needs an eager simulator"):
        Simulator(net, compile=True).set_model("b", LIF())


def test_bad_network_parameters_are_refused_by_name():
    with pytest.raises(ValueError, match="n must be a positive integer, got 2.5"):
        Network().population("a", 2.5)
    with pytest.raises(ValueError, match="n must be a positive integer, got True"):
        Network().input("x", True)
    with pytest.raises(ValueError, match="dt must be a positive, finite number of seconds, got inf"):
        Network(dt=math.inf)
    with pytest.raises(TypeError, match="name must be a string"):
        Network(name=None)
    with pytest.raises(TypeError, match="model must be a neuron model"):
        Network().population("a", 2, "LIF")
    with pytest.raises(ValueError, match="v_th must be a finite number, got nan"):
        LIF(v_th=math.nan)
    with pytest.raises(ValueError, match="v_reset must be a finite number"):
        IAF(v_reset=math.inf)
    # dt / tau > 1: one input spike would make the current oscillate with growing amplitude
    with pytest.raises(ValueError, match=r"population 'a': tau_syn \(0.0003 s\) is shorter than the time step dt \(0.001 s\)"):
        Network(dt=1e-3).population("a", 1, LIF(tau_mem=2e-3, tau_syn=0.3e-3))
    net = Network(dt=1e-3)
    net.population("a", 1, LIF(tau_mem=1e-3, tau_syn=1e-3))  # dt == tau: the state decays fully each step
    with pytest.raises(ValueError, match=r"set_model 'a': tau_mem \(0.0005 s\) is shorter"):
        Simulator(net).set_model("a", LIF(tau_mem=0.5e-3))


def test_a_refused_call_leaves_the_simulator_as_it_was():
    net = Network(dt=1e-3)
    net.input("inp", 6)
    net.population("out", 4, LIF(v_th=0.3))
    net.connect("inp", "out", np.full((4, 6), 0.3), rule=standard_rules.modulated_stdp(a_plus=0.02, a_minus=0.021, t_epoch=2),
                name="ff")
    sim = Simulator(net, replicas=2, dtype=torch.float64)
    sim.run(3, {"inp": torch.ones(3, 2, 6)}, third_factors={"out": torch.ones(4)})
    before = sim.state_dict()
    bad_calls = [
        lambda: sim.run(4, {"inp": torch.ones(4, 3, 6)}, third_factors={"out": torch.ones(4)}),
        lambda: sim.run(4, {"inp": torch.ones(4, 2, 6)}, third_factors={"out": torch.ones(3)}),
        lambda: sim.run(4, {"inp": torch.ones(4, 2, 6)}, third_factors={"out": torch.ones(5, 2, 4)}),
        lambda: sim.step({"inp": torch.ones(2, 6)}, {"out": torch.ones(3, 4)}),
    ]
    for call in bad_calls:
        with pytest.raises(ValueError, match="shape"):
            call()
        after = sim.state_dict()
        for k, v in before.items():
            np.testing.assert_array_equal(after[k], v, err_msg=k)
    with pytest.raises(KeyError, match="unknown population"):
        sim.run(2, {"inp": torch.ones(2, 6)}, third_factors={"nope": torch.ones(4)})
    assert sim.time_step == 3


def test_rule_constants_keep_float64_and_a_vanishing_dependency_wins_over_an_infinite_factor():
    from neuro import minimum, x0, y1, w
    net = Network(dt=1e-3)
    net.input("inp", 1)
    net.population("out", 1, LIF())
    net.connect("inp", "out", 1.0, rule=LearningRule(dw=u * minimum(w, 0.1)), name="ff")
    sim = Simulator(net, dtype=torch.float64)
    sim.run(1, {"inp": torch.zeros(1, 1)})
    assert sim.weights("ff").item() == 1.1  # 0.1 unrounded (as float32 it is 0.10000000149)
    # y1 / w is infinite where w = 0; x0 = 0 there (pre 0 never fires), so the product is 0 on every path
    weights = np.full((3, 4), 0.3)
    weights[0, 0] = 0.0
    net = Network(dt=1e-3)
    net.input("inp", 4)
    net.population("out", 3, LIF(v_th=0.3))
    net.connect("inp", "out", weights, rule=LearningRule(dw=0.01 * x0 * (y1 / w), traces={"y1": Trace(1.0, 10e-3)}), name="ff")
    spikes = torch.zeros(10, 1, 4)
    spikes[::2, 0, 1] = 1
    results = []
    for event_driven in (True, False):
        s = Simulator(net, dtype=torch.float64, event_driven=event_driven)
        s.run(10, {"inp": spikes})
        results.append(s.weights("ff"))
    assert results[1][0, 0] == 0.0 and torch.isfinite(results[1]).all()
    torch.testing.assert_close(results[0], results[1], rtol=1e-12, atol=0)


def test_load_state_dict_refuses_spike_steps_outside_the_epoch_and_negative_time():
    net = Network(dt=1e-3)
    net.input("inp", 4)
    net.population("out", 3, LIF(v_th=0.3))
    net.connect("inp", "out", 0.5, rule=standard_rules.stdp(a_plus=0.02, a_minus=0.021, t_epoch=3), name="ff")
    sim = Simulator(net)
    sim.run(4, {"inp": torch.ones(4, 4)})
    for key, value, problem in [("plasticity/ff/tx", np.full((1, 4), 99, np.int32), r"must lie in \[0, 3\], got \[99, 99\]"),
                                ("plasticity/ff/ty", np.full((1, 3), -2, np.int32), r"must lie in \[0, 3\], got \[-2, -2\]"),
                                ("time_step", np.asarray(-7), "must be >= 0, got -7")]:
        state = sim.state_dict()
        state[key] = value
        with pytest.raises(ValueError, match=problem):
            Simulator(net).load_state_dict(state)


def test_a_simulator_needs_a_floating_dtype():
    net = Network()
    net.input("x", 2)
    with pytest.raises(TypeError, match="dtype must be a floating torch dtype"):
        Simulator(net, dtype=torch.int32)
