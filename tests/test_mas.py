"""Memory Aware Synapses: task streams, forgetting metrics, importance, consolidation rules and learners."""
import numpy as np
import pytest
import torch

from hardware.loihi_rules import lowering_problems, to_loihi_strings
from neuro.datasets import load_digits
from neuro.rates import RateSimulator, SoftWTA
from neuro.streams import average_accuracy, average_forgetting, permuted_tasks, split_tasks
from networks.mas import (
    ContinualConfig,
    ContinualMLP,
    anchor,
    consolidate_gate,
    consolidated,
    ewc_fisher,
    importance_gated,
    mas_gradient_importance,
    run_stream,
)
from networks.softhebb import SoftHebbConfig, build_rate, softhebb_rule


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_split_and_permuted_streams(digits):
    tasks = split_tasks(digits)
    assert [t.classes for t in tasks] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    assert sum(len(t.x_train) for t in tasks) == len(digits.x_train)
    for t in tasks:
        assert set(np.unique(t.y_train)) == set(t.classes) and set(t.y_test_in_task) == {0, 1}
    with pytest.raises(ValueError, match="cannot be cut into 3 equal tasks"):
        split_tasks(digits, 3)
    perm = permuted_tasks(digits, 3, seed=1)
    np.testing.assert_array_equal(perm[0].x_train, digits.x_train)
    assert not np.array_equal(perm[1].x_train, digits.x_train)
    # A permutation moves pixels, it does not change them.
    np.testing.assert_array_equal(np.sort(perm[1].x_train, axis=1), np.sort(digits.x_train, axis=1))
    np.testing.assert_array_equal(permuted_tasks(digits, 3, seed=1)[2].x_test, perm[2].x_test)


def test_average_accuracy_and_forgetting():
    acc = np.array([[0.9, 0.0, 0.0], [0.6, 0.8, 0.0], [0.5, 0.7, 0.95]])
    assert average_accuracy(acc) == pytest.approx((0.5 + 0.7 + 0.95) / 3)
    assert average_forgetting(acc) == pytest.approx(((0.9 - 0.5) + (0.8 - 0.7)) / 2)
    assert average_forgetting(np.array([[0.7]])) == 0.0
    with pytest.raises(ValueError, match=r"\(tasks, tasks\)"):
        average_accuracy(np.zeros((2, 3)))


def test_gradient_importance_of_a_linear_layer_is_the_coactivity():
    """For F = W x, d||F||^2/dW_ij = 2 u_i x_j: MAS's gradient form equals |2 u x| averaged."""
    model = torch.nn.Linear(5, 3, bias=False)
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    omega = mas_gradient_importance(model, x)["weight"]
    u = x @ model.weight.detach().T
    expected = (2 * u[:, :, None] * x[:, None, :]).abs().mean(0)
    torch.testing.assert_close(omega, expected)


def test_ewc_fisher_matches_a_per_sample_loop():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    x, y = torch.randn(5, 4), torch.tensor([0, 2, 1, 1, 0])
    fisher = ewc_fisher(model, x, y)
    expected = {k: torch.zeros_like(p) for k, p in model.named_parameters()}
    for i in range(5):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        for k, p in model.named_parameters():
            expected[k] += p.grad**2 / 5
    for k in expected:
        torch.testing.assert_close(fisher[k], expected[k])


def test_both_consolidations_lower_to_loihi():
    base = softhebb_rule(eta=2.0**-7, adaptive=False)
    gated = importance_gated(base, gamma=2.0**-4)
    assert to_loihi_strings(gated) == {
        "dw": "2^-7 * y0 * x1 * (1 - t) + 2^-7 * y0 * y2 * w * (t - 1)",
        "dd": "2^-4 * u0 * x1 * y1",
    }
    exact = consolidated(base, lam=2.0**-3)
    assert lowering_problems(exact) == []
    assert to_loihi_strings(exact)["dw"].endswith("- 2^-3 * u0 * t * w + 2^-3 * u0 * t * d")
    with pytest.raises(ValueError, match="must learn only w"):
        importance_gated(gated)
    with pytest.raises(ValueError, match="must learn only w"):
        consolidated(gated, lam=1.0)


def test_consolidation_penalty_pulls_weights_back_to_the_anchor_only_after_a_task():
    """Rate semantics of dw = eta*y0*(x1 - y2*w) - lam*u*t*(w - d) with eta = 0."""
    rule = consolidated(softhebb_rule(eta=0.0, adaptive=False), lam=0.5)
    net = build_rate(4, SoftHebbConfig(n_neurons=3, init_radius=1.0))
    net.projections["ff1"].rule = rule
    sim = RateSimulator(net, {"layer1": SoftWTA(1.0)}, dtype=torch.float64)
    syn = sim.w["ff1"]
    x = torch.rand(2, 4, dtype=torch.float64)
    w0 = syn["w"].clone()
    sim.learn({"pixels": x})
    torch.testing.assert_close(syn["w"], w0)  # no earlier task: no importance, no pull
    anchor(syn, torch.full_like(syn["w"][0], 0.4))
    syn["w"] = syn["d"] + 0.3
    sim.learn({"pixels": x})
    torch.testing.assert_close(syn["w"] - syn["d"], torch.full_like(syn["w"], 0.3 * (1 - 0.5 * 0.4)))


def test_rate_importance_is_the_mean_coactivity():
    from networks.mas import rate_importance

    cfg = SoftHebbConfig(n_neurons=5, temperature=0.5)
    sim = RateSimulator(build_rate(6, cfg), {"layer1": SoftWTA(0.5)}, dtype=torch.float64)
    x = np.random.default_rng(0).uniform(size=(10, 6))
    y = sim.forward({"pixels": torch.as_tensor(x)})["layer1"]
    expected = (y[:, :, None] * torch.as_tensor(x)[:, None, :]).abs().mean(0)
    torch.testing.assert_close(rate_importance(sim, "ff1", x, batch=4), expected)


def test_gate_consolidation_saturates_below_one():
    syn = {"t": torch.tensor([0.0, 0.5, 0.9]), "d": torch.tensor([1.0, 0.0, 50.0])}
    consolidate_gate(syn)
    torch.testing.assert_close(syn["t"], torch.tensor([1 - float(np.exp(-1.0)), 0.5, 1.0]), atol=1e-6, rtol=0)
    assert (syn["d"] == 0).all()


def test_consolidation_reduces_forgetting_on_domain_incremental_split_digits(digits):
    tasks = split_tasks(digits)
    forgetting, accuracy = {}, {}
    runs = {"naive": ("naive", {}), "mas": ("mas", {"lam": 3.0}), "mas_hebbian": ("mas_hebbian", {"lam": 3.0}),
            "gated": ("gated", {"gamma": 0.1}), "joint": ("joint", {}), "mas_strong": ("mas", {"lam": 30.0})}
    for name, (method, extra) in runs.items():
        acc = run_stream(tasks, method, ContinualConfig(setting="domain", **extra))
        forgetting[name], accuracy[name] = average_forgetting(acc), average_accuracy(acc)
    # Measured: naive 0.146; mas 0.083, mas_hebbian 0.076, gated 0.107; mas at lam 30: -0.031.
    assert forgetting["naive"] > 0.1  # the stream does make a naive learner forget
    for name in ("mas", "mas_hebbian"):
        assert forgetting[name] < 0.7 * forgetting["naive"], (name, forgetting)
        assert accuracy[name] > accuracy["naive"] + 0.01, (name, accuracy)
    assert forgetting["gated"] < 0.9 * forgetting["naive"]
    assert forgetting["mas_strong"] < 0.25 * forgetting["naive"]
    assert accuracy["joint"] > accuracy["naive"] + 0.05


def test_unknown_method_and_setting_are_refused():
    with pytest.raises(ValueError, match="unknown continual-learning method 'sgd'"):
        ContinualMLP(4, 2, "sgd")
    with pytest.raises(ValueError, match="setting must be"):
        ContinualMLP(4, 2, "naive", ContinualConfig(setting="class"))


def test_unsupervised_softhebb_stream_keeps_fixed_readouts(digits):
    from networks.mas import softhebb_stream
    from networks.softhebb import SoftHebbConfig

    tasks = split_tasks(digits)
    cfg = SoftHebbConfig(n_neurons=60)
    accs = {m: softhebb_stream(tasks, m, cfg, **kw) for m, kw in
            (("naive", {}), ("gated", {"gamma": 0.1}), ("mas", {"lam": 0.1, "gamma": 0.1}))}
    for acc in accs.values():
        assert acc.shape == (5, 5) and np.diag(acc).min() > 0.8  # each pair of digits is separated when learned
    # Gating really freezes: with a huge importance rate nothing after the first task moves the features.
    frozen = softhebb_stream(tasks, "gated", cfg, gamma=1e6)
    assert average_forgetting(frozen) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="naive, mas or gated"):
        softhebb_stream(tasks, "ewc", cfg)


def test_gated_softhebb_consolidates_in_torch_and_continues_identically_on_lava():
    """The hardware variant on a small spiking SoftHebb layer: task A in torch, the consolidation step
    (d folded into the gate t), task B on Lava floating_pt, against torch doing task B itself."""
    pytest.importorskip("lava")
    from export.lava import run_lava
    from neuro import Simulator
    from networks.softhebb import SpikingConfig, build_spiking, scale_inputs

    spk = SpikingConfig()
    net = build_spiking(64, SoftHebbConfig(n_neurons=16, seed=1), spk)
    net.projections["ff"].rule = importance_gated(net.projections["ff"].rule, gamma=2.0**-6)
    images = load_digits().x_train
    task_a, task_b = scale_inputs(images[3:4], spk)[0], scale_inputs(images[10:11], spk)[0]
    first = Simulator(net, dtype=torch.float64, seed=2)
    first.run(300, {"pixels": task_a})
    assert first.syn["ff"]["d"].max() > 1.0  # task A's importance accumulated in d
    consolidate_gate(first.syn["ff"])
    assert 0.5 < float(first.syn["ff"]["t"].max()) < 1.0
    reference = Simulator(net, dtype=torch.float64, seed=2)
    reference.load_state_dict(first.state_dict())
    monitors = ["layer1.spikes", "ff.w", "ff.t", "ff.d"]
    ours = reference.run(300, {"pixels": task_b}, monitors=monitors)
    lava = run_lava(net, 300, {"pixels": task_b}, monitors=monitors, initial=first)
    assert lava["layer1.spikes"].sum() > 20
    np.testing.assert_array_equal(ours["layer1.spikes"].numpy(), lava["layer1.spikes"].numpy())
    for m in ("ff.w", "ff.t", "ff.d"):
        np.testing.assert_allclose(ours[m].numpy(), lava[m].numpy(), rtol=1e-5, atol=1e-9, err_msg=m)
    # The gate holds: synapses that task A made important move less during task B.
    w = lava["ff.w"].numpy()[:, 0]
    t = first.syn["ff"]["t"][0].numpy()
    moved = np.abs(w[-1] - w[0])
    assert moved[t > 0.9].mean() < 0.2 * moved[t < 0.1].mean()


def test_streams_refuse_bad_counts_and_missing_classes(digits):
    from dataclasses import replace

    for bad in (2.0, 0, True):
        with pytest.raises(ValueError, match="positive integer"):
            split_tasks(digits, bad)
        with pytest.raises(ValueError, match="positive integer"):
            permuted_tasks(digits, bad)
    keep = digits.y_test < 8
    no_nines = replace(digits, x_test=digits.x_test[keep], y_test=digits.y_test[keep])
    with pytest.raises(ValueError, match=r"task 4 \(classes \(8, 9\)\) has no test images"):
        split_tasks(no_nines)


def test_continual_config_refuses_bad_counts_and_rates():
    for bad, message in (
        (dict(batch=0), "batch must be a positive integer, got 0"),
        (dict(epochs=-1), "epochs must be a positive integer, got -1"),
        (dict(epochs=2.0), r"epochs must be a positive integer, got 2.0 \(float\)"),
        (dict(hidden=0), "hidden must be a positive integer"),
        (dict(seed=-1), "seed must be a non-negative integer"),
        (dict(lr=float("nan")), "lr must be a finite positive number, got nan"),
        (dict(lr=0.0), "lr must be a finite positive number"),
        (dict(lam=-1.0), "lam must be a finite non-negative number"),
        (dict(gamma=float("inf")), "gamma must be a finite non-negative number"),
        (dict(setting="class"), "setting must be 'task' or 'domain'"),
    ):
        with pytest.raises(ValueError, match=message):
            ContinualConfig(**bad)
    assert ContinualConfig(lam=0.0, gamma=0.0).lam == 0.0


def test_gated_method_gates_the_weights_and_leaves_the_biases_ungated():
    """The ``gated`` method scales each weight's optimizer step by ``1 - t``; the biases have no importance
    tag, so they take the full step (as the module docstring says)."""
    learner = ContinualMLP(4, 2, "gated", ContinualConfig(hidden=3, epochs=1, batch=4))
    learner.gate = {k: torch.ones_like(v) for k, v in learner.gate.items()}  # every weight fully consolidated
    weights = {k: m.weight.detach().clone() for k, m in learner.layers.items()}
    biases = {k: m.bias.detach().clone() for k, m in learner.layers.items()}
    x = torch.rand(8, 4, generator=torch.Generator().manual_seed(0))
    learner.learn(x, torch.arange(8) % 2, torch.ones(8, 2, dtype=torch.bool))
    for k, m in learner.layers.items():
        torch.testing.assert_close(m.weight.detach(), weights[k], rtol=0, atol=0)
        assert not torch.equal(m.bias.detach(), biases[k])
