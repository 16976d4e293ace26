"""Predictive coding (rate version): the graph, inference lowering the energy, local learning ~ backprop."""
import numpy as np
import pytest
import torch

from neuro.datasets import load_digits
from neuro import Tie
from networks.pc import PCConfig, PCNetwork, accuracy, backprop_mlp, build, generate, pc_rule, train


def test_graph_has_error_populations_and_the_rule_is_local():
    cfg = PCConfig(hidden=(5,))
    net = build(4, 3, cfg)
    assert {"x0", "bias", "x1", "e1", "x2", "e2"} <= set(net.populations)
    plastic = {name for name, p in net.projections.items() if p.rule is not None}
    assert plastic == {"W1", "B1", "W2", "B2"}
    assert net.projections["W2"].pre == "x1" and net.projections["W2"].post == "e2"
    # Feedback from the layer above carries the transposed predictions.
    np.testing.assert_array_equal(net.projections["e2_to_x1"].weights, -net.projections["W2"].weights.T)
    assert net.projections["e2_to_x1"].tie == Tie("W2", transpose=True, scale=-1.0)
    from hardware.loihi_rules import to_loihi_strings

    assert to_loihi_strings(pc_rule(eta=2.0**-4)) == {"dw": "-2^-4 * u0 * y2 * x1"}
    with pytest.raises(ValueError, match="unknown activation"):
        PCConfig(activation="sigmoid")
    with pytest.raises(ValueError, match="nudge"):
        PCConfig(nudge=0.0)


def test_inference_lowers_the_energy_and_free_inference_keeps_the_feedforward_pass():
    cfg = PCConfig(hidden=(16,), gamma=0.1)
    pc = PCNetwork(build(8, 3, cfg), cfg, dtype=torch.float64)
    x = torch.rand(5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    target = torch.eye(3, dtype=torch.float64)[[0, 1, 2, 0, 1]]
    _, errors, energies = pc.infer(x, target, steps=20)
    assert energies[0] > 0 and all(b <= a + 1e-12 for a, b in zip(energies, energies[1:]))
    assert energies[-1] < 0.9 * energies[0]
    values, errors, free = pc.infer(x, None, steps=5)
    assert max(free) < 1e-20  # with nothing clamped at the top the feed-forward pass has no error
    torch.testing.assert_close(values[-1], pc.predict(x))


def test_one_inference_step_learning_equals_backprop_on_the_output_layer():
    """With the hidden values at their feed-forward values, PC's update of the top layer is the
    negative gradient of the squared error: the same step as backprop's."""
    cfg = PCConfig(hidden=(6,), steps=1, gamma=0.0, eta=0.1)
    net = build(4, 3, cfg)
    pc = PCNetwork(net, cfg, dtype=torch.float64)
    x = torch.rand(7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    target = torch.eye(3, dtype=torch.float64)[[0, 1, 2, 0, 1, 2, 0]]
    w2 = pc.W(2).clone().requires_grad_(True)
    b2 = pc.b(2).clone().requires_grad_(True)
    h = torch.tanh(x @ pc.W(1).T + pc.b(1))
    loss = 0.5 * ((h @ w2.T + b2 - target) ** 2).sum(dim=1).mean()
    loss.backward()
    expected_w, expected_b = w2 - 0.1 * w2.grad, b2 - 0.1 * b2.grad
    pc.learn(x, target)
    torch.testing.assert_close(pc.W(2), expected_w.detach())
    torch.testing.assert_close(pc.b(2), expected_b.detach())
    # The learned graph's feedback follows the learned predictions (a tie).
    now = pc.current_network()
    np.testing.assert_allclose(now.projections["e2_to_x1"].weights, pc.W(2).T.numpy(), rtol=1e-15)
    assert not np.allclose(now.projections["e2_to_x1"].weights, net.projections["e2_to_x1"].weights)
    np.testing.assert_array_equal(now.projections["W2"].weights, -pc.W(2).numpy())


def test_pc_learns_digits_close_to_backprop():
    data = load_digits()
    cfg = PCConfig(hidden=(64,), steps=8, eta=0.05, epochs=10)
    pc = PCNetwork(build(64, 10, cfg), cfg)
    untrained = accuracy(pc, data.x_test, data.y_test)
    train(pc, data.x_train, data.y_train, 10)
    learned = accuracy(pc, data.x_test, data.y_test)
    model, _ = backprop_mlp(data.x_train, data.y_train, 10, cfg)
    with torch.no_grad():
        bp = float((model(torch.as_tensor(data.x_test)).argmax(dim=1).numpy() == data.y_test).mean())
    assert untrained < 0.3 and learned > 0.85
    assert abs(learned - bp) < 0.03, (learned, bp)


def test_generative_use_produces_each_class_and_the_input_can_be_inferred():
    from networks.pc import generate

    data = load_digits()
    cfg = PCConfig(hidden=(32,), epochs=5, activation="relu")
    gen = PCNetwork(build(10, 64, cfg), cfg)  # label at the bottom, image on top
    train(gen, data.x_train, data.y_train, 10, generative=True)
    images = generate(gen, 10)
    means = np.stack([data.x_train[data.y_train == c].mean(axis=0) for c in range(10)])
    corr = np.corrcoef(images, means)[:10, 10:]
    # Measured: own class 0.90-0.96, others 0.75 on average; 9 of 10 most like their own class (5 -> 8).
    assert (corr.argmax(axis=1) == np.arange(10)).sum() >= 8
    assert np.diag(corr).min() > 0.85 and np.diag(corr).mean() > corr[~np.eye(10, dtype=bool)].mean() + 0.1
    # Relaxing the bottom layer too (clamp_input=False) lowers the energy further than relaxing the hidden layer alone.
    x = torch.full((20, 10), 0.1)
    top = torch.as_tensor(data.x_test[:20])
    _, _, hidden_only = gen.infer(x, top, steps=30)
    _, _, with_input = gen.infer(x, top, steps=30, clamp_input=False)
    assert with_input[-1] < hidden_only[-1] <= hidden_only[0]


def _tiny(cfg=PCConfig(hidden=(8,), epochs=1, batch=8)):
    """A 4-input, 3-class network and 24 images with their labels."""
    rng = np.random.default_rng(0)
    return PCNetwork(build(4, 3, cfg), cfg), rng.uniform(size=(24, 4)), np.arange(24) % 3


def test_config_refuses_bad_counts_rates_and_widths():
    for bad in (dict(epochs=-1), dict(epochs=0), dict(batch=-4), dict(batch=0), dict(steps=8.0), dict(epochs=2.0),
                dict(batch=True), dict(hidden=(16, 0)), dict(hidden=(16.0,)), dict(seed=-1)):
        with pytest.raises(ValueError, match="must be a (positive|non-negative) integer"):
            PCConfig(**bad)
    for bad in (dict(eta=float("nan")), dict(eta=0.0), dict(eta=-0.1), dict(eta=float("inf")), dict(gamma=float("nan")),
                dict(gamma=-0.1)):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be a finite"):
            PCConfig(**bad)
    with pytest.raises(TypeError, match=r"hidden must be a tuple of layer widths, e.g. \(16,\)"):
        PCConfig(hidden=16)
    # Numpy ints and a list of widths are integers too: stored as Python ints in a tuple.
    cfg = PCConfig(hidden=[5, np.int64(4)], epochs=np.int64(2), gamma=0.0)
    assert cfg.hidden == (5, 4) and type(cfg.epochs) is int and type(cfg.hidden[1]) is int
    assert build(3, 2, cfg).populations["x2"].n == 4


def test_accuracy_refuses_label_columns_and_out_of_range_labels():
    pc, x, y = _tiny()
    expected = float((pc.predict(torch.as_tensor(x)).argmax(dim=1).numpy() == y).mean())
    assert accuracy(pc, x, y) == expected
    # (n, 1) labels broadcast against (n,) predictions into an (n, n) grid: a wrong number, no error.
    with pytest.raises(ValueError, match=r"accuracy: labels must have shape \(24,\), one per image, got \(24, 1\)"):
        accuracy(pc, x, y[:, None])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\) for 3 classes, got values from 10 to 12"):
        accuracy(pc, x, y + 10)
    with pytest.raises(ValueError, match="integer class indices, got dtype float64"):
        accuracy(pc, x, y.astype(float))
    with pytest.raises(ValueError, match=r"images must have shape \(n, 4\), got \(24, 3\)"):
        accuracy(pc, x[:, :3], y)
    x_nan = x.copy()
    x_nan[5, 2] = np.nan
    with pytest.raises(ValueError, match=r"accuracy: images contain NaN or infinite values \(1 of 96\)"):
        accuracy(pc, x_nan, y)


def test_train_refuses_nan_images_and_mismatched_shapes_labels_and_classes():
    pc, x, y = _tiny()
    before = [pc.W(l).clone() for l in (1, 2)]
    x_nan = x.copy()
    x_nan[3, 1] = np.nan  # one NaN pixel would make every weight NaN
    cases = [
        ((x_nan, y, 3), r"train: images contain NaN or infinite values \(1 of 96\)"),
        ((x[:, :3], y, 3), r"train: images must have shape \(n, 4\), got \(24, 3\)"),
        ((x, y, 5), r"train: n_classes=5, but the network's top layer \(the label's\) has 3 units"),
        ((x, y.astype(float), 3), "train: labels must be integer class indices, got dtype float64"),
        ((x, y[:5], 3), r"train: labels must have shape \(24,\), one per image, got \(5,\)"),
        ((x, y[:, None], 3), r"train: labels must have shape \(24,\), one per image, got \(24, 1\)"),
        ((x, y - 1, 3), r"train: labels must lie in \[0, 3\) for 3 classes, got values from -1 to 1"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            train(pc, *args)
    for l, w in zip((1, 2), before):
        torch.testing.assert_close(pc.W(l), w, rtol=0, atol=0)  # refused before any update
    # Generative use: the label is at the bottom, so n_classes is the bottom layer's width.
    gen = PCNetwork(build(3, 4, PCConfig(hidden=(8,), epochs=1)), PCConfig(hidden=(8,), epochs=1))
    with pytest.raises(ValueError, match=r"n_classes=4, but the network's bottom layer \(the label's\) has 3 units"):
        train(gen, x, y, 4, generative=True)
    train(gen, x, y, 3, generative=True)
    with pytest.raises(ValueError, match="generate: n_classes=4"):
        generate(gen, 4)


def test_train_orders_samples_by_the_configs_seed_by_default():
    """``PCConfig.seed`` seeds the initial weights and the sample order: ``train``'s default seed is the config's."""
    cfg = PCConfig(hidden=(8,), epochs=1, batch=4, seed=3)
    x = np.random.default_rng(1).uniform(size=(24, 4))
    y = np.arange(24) % 3
    nets = {}
    for name, seed in (("default", None), ("explicit 3", 3), ("explicit 0", 0)):
        nets[name] = PCNetwork(build(4, 3, cfg), cfg, dtype=torch.float64)
        kwargs = {} if seed is None else {"seed": seed}
        train(nets[name], x, y, 3, **kwargs)
    torch.testing.assert_close(nets["default"].W(1), nets["explicit 3"].W(1), rtol=0, atol=0)
    assert not torch.equal(nets["default"].W(1), nets["explicit 0"].W(1))  # an explicit seed still counts
