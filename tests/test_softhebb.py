"""SoftHebb: the rule language's cross-neuron operations, rate semantics, the rate and spiking layers."""
import json

import numpy as np
import pytest
import torch

from neuro import LearningRule, RuleError, Simulator, Trace, sum_pre, w, winner, x1, y0, y2
from neuro.plasticity import _product
from neuro.rates import Identity, RateSimulator, ReLU, SoftWTA
from networks.softhebb import (
    SoftHebbConfig,
    SpikingConfig,
    build_rate,
    build_spiking,
    initial_weights,
    rate_simulator,
    scale_inputs,
    train_rate,
    features,
)


def paper_update(W, x, temperature, eta, adaptive, anti_hebbian):
    """SoftHebb's mini-batch update written directly (Moraitis et al. 2022, the reference code's rate)."""
    u = x @ W.T
    y = torch.softmax(u / temperature, dim=1)
    if anti_hebbian:
        win = torch.nn.functional.one_hot(u.argmax(dim=1), W.shape[0]).to(y.dtype)
        y = y * (2 * win - 1)
    dw = (y.T @ x - (y * u).sum(0)[:, None] * W) / len(x)
    if adaptive:
        dw = dw * ((W.norm(dim=1, keepdim=True) - 1).abs()) ** 0.5
    return W + eta * dw


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("anti_hebbian", [False, True])
def test_rate_semantics_of_the_rule_is_the_papers_update(adaptive, anti_hebbian):
    cfg = SoftHebbConfig(n_neurons=30, temperature=0.3, eta=0.5, adaptive=adaptive, anti_hebbian=anti_hebbian)
    net = build_rate(20, cfg)
    sim = RateSimulator(net, {"layer1": SoftWTA(cfg.temperature)}, dtype=torch.float64)
    x = torch.rand(12, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    W = torch.as_tensor(net.projections["ff1"].weights)
    for _ in range(3):
        expected = paper_update(W, x, cfg.temperature, cfg.eta, adaptive, anti_hebbian)
        sim.learn({"pixels": x})
        torch.testing.assert_close(sim.weights("ff1"), expected, rtol=1e-12, atol=1e-12)
        W = expected
    assert (W - torch.as_tensor(net.projections["ff1"].weights)).abs().max() > 1e-3


def test_cross_neuron_operations_round_trip_and_compute():
    rule = LearningRule(
        dw=y0 * (2 * winner(y2) - 1) * (x1 - y2 * w) * sum_pre(w * w) ** 0.5,
        traces={"x1": Trace(1.0, 20e-3), "y2": Trace(driven_by="i")},
    )
    assert LearningRule.from_data(json.loads(json.dumps(rule.to_data()))) == rule
    # winner: one-hot of the largest post value; sum_pre: a sum over the pre population.
    from neuro.plasticity import _OPS

    v = torch.tensor([[[0.1], [0.7], [0.3]]])
    assert _OPS["winner"]([v], ()).flatten().tolist() == [0.0, 1.0, 0.0]
    m = torch.arange(6.0).reshape(1, 2, 3)
    assert _OPS["sum_pre"]([m], ()).flatten().tolist() == [3.0, 12.0]
    with pytest.raises(ValueError, match="winner"):
        _OPS["winner"]([torch.tensor(1.0)], ())
    with pytest.raises(RuleError, match="unknown rule operation"):
        from neuro.expr import expr_from_data

        expr_from_data({"op": "argmax", "args": [{"var": "y2"}]})


def test_minibatch_contraction_equals_the_broadcast_sum():
    g = torch.Generator().manual_seed(0)
    R, M, N = 5, 7, 4
    post, pre, common = torch.rand(R, M, 1, generator=g), torch.rand(R, 1, N, generator=g), torch.rand(1, M, N, generator=g)
    full = torch.rand(R, M, N, generator=g)
    cases = [[0.5, post, pre, common], [post, common], [pre, 2.0], [post, pre], [post, full, pre]]
    for factors in cases:
        naive = factors[0]
        for f in factors[1:]:
            naive = naive * f
        naive = torch.broadcast_to(torch.as_tensor(naive), (R, M, N)).sum(0, keepdim=True)
        torch.testing.assert_close(_product(factors, R, (M, N), True), naive)


def test_shared_weights_learn_the_sum_of_the_replicas_updates():
    """The engine's matmul path for mini-batches equals the sum of per-replica updates."""
    cfg = SoftHebbConfig(n_neurons=6, init_radius=1.0)
    spk = SpikingConfig(v_th=0.3, inhibition=0.5, eta=0.1)
    x = torch.rand(3, 16, generator=torch.Generator().manual_seed(2))
    shared = build_spiking(16, cfg, spk)
    w_start = shared.projections["ff"].weights
    per_replica = build_spiking(16, cfg, spk, weights=np.stack([w_start] * 3))
    sims = [Simulator(net, replicas=3, dtype=torch.float64, seed=0) for net in (shared, per_replica)]
    for sim in sims:
        sim.learning = False
        sim.run(30, {"pixels": x})  # identical dynamics while the weights are frozen
        sim.learning = True
        sim.run(1, {"pixels": x})
    w0 = torch.as_tensor(w_start)
    summed = (sims[1].weights("ff") - w0).sum(dim=0)
    assert summed.abs().max() > 1e-3  # somebody spiked and learned
    torch.testing.assert_close(sims[0].weights("ff") - w0, summed, rtol=1e-10, atol=1e-12)


def test_rate_simulator_refuses_bad_networks_and_inputs():
    cfg = SoftHebbConfig(n_neurons=5)
    net = build_rate(8, cfg)
    with pytest.raises(ValueError, match="transfer function for population"):
        RateSimulator(net, {})
    with pytest.raises(ValueError, match="not .*populations"):
        RateSimulator(net, {"layer1": ReLU(), "nope": Identity()})
    sim = RateSimulator(net, {"layer1": SoftWTA(0.5)})
    with pytest.raises(ValueError, match=r"expected activities \(B, 8\)"):
        sim.forward({"pixels": torch.rand(3, 9)})
    with pytest.raises(KeyError, match="no activity given"):
        sim.forward({})
    with pytest.raises(ValueError, match="NaN"):
        sim.forward({"pixels": torch.full((2, 8), float("nan"))})
    with pytest.raises(ValueError, match="NaN"):
        sim.set_weights("ff1", np.full((5, 8), np.nan))
    with pytest.raises(ValueError, match="temperature"):
        SoftWTA(0.0)
    spiking = build_spiking(8, cfg)
    with pytest.raises(ValueError, match="feed-forward.*from_inh|feed-forward.*to_inh"):
        RateSimulator(spiking, {"layer1": SoftWTA(1.0), "inh": Identity()})
    # A diverging learning rate is reported, not silently turned into NaN weights.
    hot = RateSimulator(build_rate(8, SoftHebbConfig(n_neurons=5, eta=1e6)), {"layer1": SoftWTA(0.01)})
    with pytest.raises(FloatingPointError, match="ff1"):
        for _ in range(20):
            hot.learn({"pixels": torch.rand(4, 8) * 10})


def test_stacked_layers_both_learn_towards_unit_norm():
    cfg = SoftHebbConfig(n_neurons=40, temperature=0.5, eta=2.0, init_radius=3.0, batch=8)
    net = build_rate(64, cfg, widths=[40, 20])
    sim = rate_simulator(net, cfg)
    assert set(sim.rules) == {"ff1", "ff2"}
    from neuro.datasets import load_digits

    x = load_digits().x_train[:400]
    before = {k: sim.weights(k).norm(dim=1).clone() for k in ("ff1", "ff2")}
    for epoch in range(3):
        train_rate(sim, x, cfg.batch, seed=epoch)
    for k in ("ff1", "ff2"):
        after = sim.weights(k).norm(dim=1)
        # |norm - 1| shrinks for most neurons in both layers.
        assert ((after - 1).abs() < (before[k] - 1).abs() - 0.05).float().mean() > 0.5, k
    acts = sim.forward({"pixels": torch.as_tensor(x[:5])})
    assert acts["layer2"].shape == (5, 20)
    torch.testing.assert_close(acts["layer2"].sum(1), torch.ones(5))


def test_spiking_winner_learns_the_presented_digit():
    """Shown one digit, the spiking layer's winners turn their weights towards it (cosine rises)."""
    from neuro.datasets import load_digits

    digit = load_digits().x_train[0]
    cfg = SoftHebbConfig(n_neurons=20, init_radius=1.0, seed=3)
    spk = SpikingConfig(v_th=1.5, inhibition=5.0, eta=2.0**-6)
    net = build_spiking(64, cfg, spk)
    sim = Simulator(net, seed=0)
    x = torch.as_tensor(scale_inputs(digit[None], spk))
    rec = sim.run(400, {"pixels": x}, monitors=["layer1.spikes"])
    counts = rec["layer1.spikes"].sum(dim=(0, 1))
    assert counts.sum() > 20
    w0 = torch.as_tensor(net.projections["ff"].weights, dtype=torch.float32)
    w1 = sim.weights("ff")
    cos = lambda m: (m @ x[0]) / (m.norm(dim=1) * x[0].norm())  # noqa: E731
    top = int(counts.argmax())
    assert cos(w1)[top] > cos(w0)[top] + 0.1
    assert cos(w1)[top] > 0.9
    # Silent neurons do not learn (y0 gates the update); the inhibition keeps most of them silent.
    silent = counts == 0
    assert silent.sum() >= 10
    torch.testing.assert_close(w1[silent], w0[silent])


def test_readout_activations_and_initial_weights():
    w0 = initial_weights(10, 4, radius=2.5, seed=0)
    assert (w0 >= 0).all() and np.allclose(np.linalg.norm(w0, axis=1), 2.5)
    x = np.random.default_rng(0).uniform(size=(7, 4))
    f = features(torch.as_tensor(w0), x)
    # k-WTA: the top 10 % of 10 neurons (one) is active in every sample.
    assert f.shape == (7, 10) and (f >= 0).all() and ((f > 0).sum(axis=1) == 1).all()
    tri = features(torch.as_tensor(w0), x, kind="triangle")
    assert ((tri > 0).sum(axis=1) >= 1).all() and ((tri > 0).sum(axis=1) < 10).all()
    with pytest.raises(ValueError, match="unknown readout activation"):
        features(torch.as_tensor(w0), x, kind="sigmoid")


def test_cross_neuron_operations_need_the_right_side_and_compare_at_the_epoch_end():
    from neuro import Param, softmax, x0, x2, y1

    for bad in (lambda: winner(x1), lambda: softmax(x2 * y1), lambda: sum_pre(y1), lambda: winner(Param("k")),
                lambda: sum_pre(2.0)):
        with pytest.raises(RuleError, match="compares the (post|pre) neurons"):
            bad()
    # One epoch of two steps, a decaying post trace: post 0 spikes at step 1 (y1 = a < 1 at the epoch's
    # end), post 1 at step 2 (y1 = 1), the pre neuron at step 2. At the end of the epoch post 1 is the
    # winner for every dependency; read at each neuron's own last spike instead, both post traces
    # would be 1 under y0 and post 0 would win the tie as the first.
    from neuro import IAF, Network

    rule = LearningRule(dw=y0 * winner(y1) + x0 * winner(y1), traces={"y1": Trace(1.0, 5e-3)}, t_epoch=2)
    net = Network(dt=1e-3)
    net.input("pre", 1)
    net.population("post", 2, IAF(v_th=0.5))
    net.connect("pre", "post", np.zeros((2, 1)), rule=rule, name="ff")
    sim = Simulator(net, dtype=torch.float64)
    sim.buffers["ff"] = torch.tensor([[1.0, 0.0]], dtype=torch.float64)  # post 0 spikes at step 1
    sim.step({"pre": torch.zeros(1, 1, dtype=torch.float64)})
    sim.buffers["ff"] = torch.tensor([[0.0, 1.0]], dtype=torch.float64)  # post 1 spikes at step 2, with a pre spike
    sim.step({"pre": torch.ones(1, 1, dtype=torch.float64)})
    assert sim.weights("ff")[:, 0].tolist() == [0.0, 2.0]  # y0 term and x0 term, both to the winner, post 1


def test_rate_learning_refuses_bad_batches_and_third_factors_and_keeps_weights_on_failure():
    from neuro import LearningRule as Rule, u as u_dep

    net = build_rate(4, SoftHebbConfig(n_neurons=3))
    net.projections["ff1"].rule = Rule(dw=10.0 * u_dep * y2 * x1, traces={"x1": Trace(1.0, 0.02), "y2": Trace(driven_by="third_factor")})
    sim = RateSimulator(net, {"layer1": SoftWTA(1.0)})
    x = torch.rand(2, 4)
    with pytest.raises(ValueError, match="empty"):
        sim.learn({"pixels": torch.zeros(0, 4)})
    with pytest.raises(KeyError, match="not the post population"):
        sim.learn({"pixels": x}, {"zzz": torch.zeros(3)})
    with pytest.raises(ValueError, match=r"expected shape \(3,\) or \(2, 3\)"):
        sim.learn({"pixels": x}, {"layer1": torch.zeros(2, 5)})
    with pytest.raises(ValueError, match="NaN"):
        sim.learn({"pixels": x}, {"layer1": torch.full((3,), float("nan"))})
    before = sim.weights("ff1").clone()
    with pytest.raises(FloatingPointError, match="left as they were"):
        sim.learn({"pixels": x}, {"layer1": torch.full((3,), 3e38)})
    torch.testing.assert_close(sim.weights("ff1"), before)
    sim.learn({"pixels": x}, {"layer1": torch.ones(3)})
    assert (sim.weights("ff1") > before).all()


def test_kwta_keeps_at_least_one_winner_and_one_loser_for_every_fraction():
    """``round(fraction * n)`` winners, kept within [1, n - 1]: the threshold is the best loser's activation
    (``fraction`` 0.95 of 10 neurons, or 0.9 of 3, used to ask kthvalue for the 0th value)."""
    from networks.softhebb import activation

    u = torch.randn(5, 12, generator=torch.Generator().manual_seed(0))
    for n in range(2, 13):
        for fraction in (0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99):
            winners = (activation(u[:, :n], "kwta", fraction) > 0).sum(dim=1)
            expected = min(max(1, round(fraction * n)), n - 1)
            assert (winners == expected).all(), (n, fraction, winners)
    with pytest.raises(ValueError, match="kwta needs at least 2 neurons .*, got 1"):
        activation(u[:, :1], "kwta", 0.5)
    for fraction in (0.0, 1.0, float("nan")):
        with pytest.raises(ValueError, match="kwta fraction must lie in"):
            activation(u, "kwta", fraction)
    with pytest.raises(ValueError, match=r"shape \(n, neurons\), got \(12,\)"):
        activation(u[0], "kwta")


def test_config_refuses_bad_batches_counts_and_rates():
    for bad, message in (
        (dict(batch=0), r"batch must be a positive integer, got 0"),
        (dict(batch=-2), r"batch must be a positive integer, got -2"),
        (dict(batch=2.0), r"batch must be a positive integer, got 2.0 \(float\)"),
        (dict(n_neurons=0), "n_neurons must be a positive integer"),
        (dict(seed=-1), "seed must be a non-negative integer"),
        (dict(eta=float("nan")), "eta must be a finite positive number, got nan"),
        (dict(temperature=0.0), "temperature must be a finite positive number"),
        (dict(init_radius=-1.0), "init_radius must be a finite positive number"),
    ):
        with pytest.raises(ValueError, match=message):
            SoftHebbConfig(**bad)
    with pytest.raises(TypeError, match="adaptive must be True or False"):
        SoftHebbConfig(adaptive="no")
    assert type(SoftHebbConfig(batch=np.int64(8)).batch) is int
    # train_rate takes its batch as an argument: the same check (range() refused a step of 0 by itself).
    sim = rate_simulator(build_rate(4, SoftHebbConfig(n_neurons=3)), SoftHebbConfig(n_neurons=3))
    with pytest.raises(ValueError, match="batch must be a positive integer, got 0"):
        train_rate(sim, np.random.default_rng(0).uniform(size=(8, 4)), 0)


def test_entry_points_refuse_nan_and_misshapen_images():
    from networks.softhebb import train_spiking

    rng = np.random.default_rng(0)
    x = rng.uniform(size=(16, 8))
    x_nan = x.copy()
    x_nan[-1, 3] = np.nan
    cfg = SoftHebbConfig(n_neurons=6, batch=4)
    sim = rate_simulator(build_rate(8, cfg), cfg)
    before = sim.weights("ff1").clone()
    with pytest.raises(ValueError, match=r"train_rate: images contain NaN or infinite values \(1 of 128\)"):
        train_rate(sim, x_nan, cfg.batch)
    torch.testing.assert_close(sim.weights("ff1"), before, rtol=0, atol=0)  # refused before the first batch
    with pytest.raises(ValueError, match=r"train_rate: images must have shape \(n, 8\), got \(16, 7\)"):
        train_rate(sim, x[:, :7], cfg.batch)
    spk = SpikingConfig(steps=4)
    snn = Simulator(build_spiking(8, cfg, spk), replicas=4)
    with pytest.raises(ValueError, match=r"train_spiking: images contain NaN or infinite values \(1 of 128\)"):
        train_spiking(snn, x_nan, spk)
    w = torch.as_tensor(initial_weights(6, 8, 1.0, 0))
    with pytest.raises(ValueError, match=r"features: images contain NaN or infinite values \(1 of 128\)"):
        features(w, x_nan)
    with pytest.raises(ValueError, match=r"features: images must have shape \(n, 8\), got \(8,\)"):
        features(w, x[0])


def test_backprop_baseline_refuses_label_columns_negative_labels_and_single_sample_batches():
    from networks.baselines import backprop_mlp_accuracy

    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(12, 8)), np.arange(12) % 3
    w0 = initial_weights(10, 8, 1.0, 0)
    for args, kwargs, message in (
        ((x, y, x, y[:, None]), {}, r"\(test\): labels must have shape \(12,\), one per image, got \(12, 1\)"),
        ((x, y[:, None], x, y), {}, r"\(train\): labels must have shape \(12,\)"),
        ((x, y, x, y - 1), {}, "labels must be non-negative class indices, got values from -1 to 1"),
        ((x, y.astype(float), x, y), {}, "labels must be integer class indices"),
        ((x, y, x[:, :7], y), {}, r"\(test\): images must have shape \(n, 8\), got \(12, 7\)"),
        ((x, y, x, y), {"batch": 1}, "batch must be an integer >= 2, got 1"),  # every batch of 1 was skipped
    ):
        with pytest.raises(ValueError, match=message):
            backprop_mlp_accuracy(*args, w0, epochs=1, **kwargs)
    acc, _ = backprop_mlp_accuracy(x, y, x, y, w0, epochs=1, batch=4)
    assert 0 <= acc <= 1


def test_readout_takes_tensors_and_lists_and_refuses_float_labels():
    import torch as _torch

    from neuro.readout import readout_accuracy

    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    x = rng.normal(0, 0.1, (60, 4)) + y[:, None]
    expected = readout_accuracy(x[:40], y[:40], x[40:], y[40:])
    assert expected > 0.9
    assert readout_accuracy(_torch.as_tensor(x[:40]), _torch.as_tensor(y[:40]), x[40:].tolist(), y[40:].tolist()) == expected
    with pytest.raises(ValueError, match="labels must be integer classes"):
        readout_accuracy(x[:40], y[:40].astype(float), x[40:], y[40:])


def test_rate_simulator_names_bad_transfer_functions_and_projections():
    from neuro import Network
    from neuro.rates import RateSimulator, ReLU, SoftWTA

    net = Network()
    net.input("x", 3)
    net.population("a", 2)
    net.connect("x", "a", 0.5)
    for bad in (ReLU, "relu"):
        with pytest.raises(TypeError, match="transfer function of 'a' must be a SoftWTA, ReLU or Identity instance"):
            RateSimulator(net, {"a": bad})
    with pytest.raises(ValueError, match="temperature must be positive and finite"):
        SoftWTA("1")
    sim = RateSimulator(net, {"a": ReLU()})
    with pytest.raises(KeyError, match="unknown projection 'nope'"):
        sim.set_weights("nope", np.zeros((2, 3)))
    no_input = Network()
    no_input.population("a", 2)
    with pytest.raises(ValueError, match="no input population"):
        RateSimulator(no_input, {"a": ReLU()})
