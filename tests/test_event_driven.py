"""Event-driven propagation and learning give the dense engine's results; sparse connectivity (masks)."""
import shutil

import numpy as np
import pytest
import torch

from neuro import LIF, LearningRule, Network, Simulator, Trace, load, random_mask, save
from neuro.expr import Param, d, softmax, t, u, w, x0, x1, y0, y1
from neuro.standard_rules import stdp


def _net(rule, mask=None, per_replica=0, w_scale=0.3, seed=0, n_in=60, n_out=40):
    rng = np.random.default_rng(seed)
    net = Network(dt=1e-3)
    net.input("inp", n_in)
    net.population("out", n_out, LIF(tau_mem=20e-3, tau_syn=5e-3, v_th=1.0))
    shape = (per_replica, n_out, n_in) if per_replica else (n_out, n_in)
    weights = rng.uniform(0, w_scale, shape)
    if mask is not None:
        weights = weights * mask
    net.connect("inp", "out", weights, rule=rule, mask=mask, name="ff")
    rec_mask = random_mask(n_out, n_out, 0.2, seed=1, autapses=False)
    net.connect("out", "out", -0.2 * rec_mask, mask=rec_mask, name="rec")
    return net


def _run(net, mode, replicas=1, steps=300, rate=0.05, seed=3):
    spikes = (torch.rand(steps, replicas, net.populations["inp"].n, generator=torch.Generator().manual_seed(seed),
                         dtype=torch.float64) < rate).double()
    sim = Simulator(net, replicas=replicas, dtype=torch.float64, event_driven=mode)
    rec = sim.run(steps, inputs={"inp": spikes}, monitors=["out.spikes", "ff.w"], every=1)
    return rec["out.spikes"], rec["ff.w"], sim


RULES = {
    "stdp": stdp(a_plus=0.02, a_minus=0.021),
    "stdp_epoch4": stdp(a_plus=0.02, a_minus=0.021, t_epoch=4),
    "multiplicative": stdp(a_plus=0.02, a_minus=0.021, multiplicative=True),
    # tag and delay targets, local and dense (u) products mixed, t_epoch > 1 (traces sampled at spike times)
    "tag_delay": LearningRule(dw=0.02 * y0 * x1 - 0.021 * x0 * y1 + 0.01 * u * t * (0.5 - w),
                              dt=0.1 * y0 * x1 - 0.02 * u * t, dd=0.05 * x0 * y1 - 0.03 * y0 * x1 * d,
                              traces={"x1": Trace(1.0, 20e-3), "y1": Trace(1.0, 10e-3)}, t_epoch=2,
                              w_min=0.0, w_max=1.0),
    # softmax compares post neurons: evaluated densely even in event mode
    "softmax": LearningRule(dw=Param("eta") * y0 * x1 * softmax(w, 1.0) - 0.01 * x0 * y1,
                            traces={"x1": Trace(1.0, 20e-3), "y1": Trace(1.0, 20e-3)},
                            params={"eta": 0.05}, w_min=0.0, w_max=1.0),
}


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("replicas,per_replica", [(1, 0), (3, 0), (3, 3)])
def test_event_driven_learning_and_propagation_match_dense(rule, replicas, per_replica):
    mask = random_mask(40, 60, 0.3, seed=2)
    net = _net(RULES[rule], mask=mask, per_replica=per_replica, w_scale=0.8)
    z_dense, w_dense, _ = _run(net, False, replicas, rate=0.08)
    z_event, w_event, _ = _run(net, True, replicas, rate=0.08)
    assert z_dense.sum() > 50 and (w_dense[-1] != w_dense[0]).any()  # it spikes and learns
    assert torch.equal(z_dense, z_event)
    torch.testing.assert_close(w_event, w_dense, rtol=1e-12, atol=1e-12)


def test_auto_mode_matches_dense_across_activity_levels():
    net = _net(RULES["stdp"], w_scale=0.6)
    for rate in (0.01, 0.3):  # mostly event-driven steps, then mostly dense ones
        z_dense, w_dense, _ = _run(net, False, rate=rate, steps=150)
        z_auto, w_auto, _ = _run(net, "auto", rate=rate, steps=150)
        assert torch.equal(z_dense, z_auto)
        torch.testing.assert_close(w_auto, w_dense, rtol=1e-12, atol=1e-12)


def test_first_epoch_clips_all_weights_in_both_modes():
    # Initial weights above w_max: a dense update clips them all at the first epoch; so must the event path.
    net = _net(stdp(a_plus=0.0, a_minus=0.0, w_max=0.2), w_scale=0.4)
    for mode in (False, True):
        _, w_rec, sim = _run(net, mode, steps=3, rate=0.0)
        assert w_rec[0].max() <= 0.2 and sim.weights("ff").max() <= 0.2
        sim.set_weights("ff", np.full((40, 60), 0.5))
        sim.run(1)
        assert sim.weights("ff").max() <= 0.2


def test_missing_synapses_never_grow():
    mask = random_mask(40, 60, 0.1, seed=5)
    net = _net(stdp(a_plus=0.05, a_minus=0.0), mask=mask, w_scale=0.8)
    for mode in (False, True):
        _, w_rec, _ = _run(net, mode, rate=0.2)
        assert (w_rec[-1][0][torch.as_tensor(~mask)] == 0).all()
        assert (w_rec[-1][0][torch.as_tensor(mask)] > w_rec[0][0][torch.as_tensor(mask)]).any()


def test_event_driven_propagation_of_per_replica_weights():
    # Propagation of per-replica weights gathers w[r, :, n] for each spike (r, n).
    net = _net(None, per_replica=2, w_scale=0.9)
    z_d, _, _ = _run(net, False, replicas=2, rate=0.1)
    z_e, _, _ = _run(net, True, replicas=2, rate=0.1)
    assert z_d.sum() > 50 and torch.equal(z_d, z_e)


def test_event_driven_tags_and_delays_match_dense():
    net = _net(RULES["tag_delay"], mask=random_mask(40, 60, 0.3, seed=2), w_scale=0.8)
    runs = {}
    for mode in (False, True):
        _, _, sim = _run(net, mode, replicas=2, rate=0.08)
        runs[mode] = {k: sim.syn["ff"][k].clone() for k in ("w", "t", "d")}
    assert (runs[False]["d"] > 0).any() and (runs[False]["t"] != 0).any()
    for k in ("w", "t", "d"):
        torch.testing.assert_close(runs[True][k], runs[False][k], rtol=1e-12, atol=1e-12)


def test_weights_returns_a_snapshot_while_learning_updates_in_place():
    net = _net(RULES["stdp"], w_scale=0.8)
    sim = Simulator(net, dtype=torch.float64, event_driven=True)
    before = sim.weights("ff")
    sim.run(100, inputs={"inp": (torch.rand(100, 60, generator=torch.Generator().manual_seed(0)) < 0.05).double()})
    assert (sim.weights("ff") != before).any()


def test_mask_with_bounds_excluding_zero_is_refused():
    net = Network()
    net.input("a", 3)
    net.population("b", 2)
    mask = np.array([[1, 0, 1], [0, 1, 0]], bool)
    with pytest.raises(ValueError, match="bounds include 0"):
        net.connect("a", "b", 0.5, mask=mask, rule=stdp(w_min=0.1))


def test_state_with_weights_off_the_mask_is_refused():
    net = _net(RULES["stdp"], mask=random_mask(40, 60, 0.3, seed=2))
    sim = Simulator(net)
    state = sim.state_dict()
    state["synapses/ff/w"] = np.ones_like(state["synapses/ff/w"])
    with pytest.raises(ValueError, match="no synapse"):
        sim.load_state_dict(state)


def test_description_of_a_masked_projection_needs_its_mask():
    net = _net(RULES["stdp"], mask=random_mask(40, 60, 0.3, seed=2))
    weights = {name: p.weights for name, p in net.projections.items()}
    with pytest.raises(ValueError, match="no mask was given"):
        Network.from_data(net.to_data(), weights)
    back = Network.from_data(net.to_data(), weights, {n: p.mask for n, p in net.projections.items()})
    assert np.array_equal(back.projections["ff"].mask, net.projections["ff"].mask)


def test_mask_errors():
    net = Network()
    net.input("a", 3)
    net.population("b", 2)
    with pytest.raises(ValueError, match="mask must have shape"):
        net.connect("a", "b", 0.1, mask=np.ones((3, 2), bool))
    with pytest.raises(ValueError, match="boolean"):
        net.connect("a", "b", 0.1, mask=np.full((2, 3), 2))
    mask = np.array([[1, 0, 1], [0, 1, 0]], bool)
    with pytest.raises(ValueError, match="must be 0 where the mask has no synapse"):
        net.connect("a", "b", np.ones((2, 3)), mask=mask)
    proj = net.connect("a", "b", 0.5, mask=mask)  # a number goes to existing synapses only
    assert proj.synapses == 3 and np.array_equal(proj.weights, 0.5 * mask)
    with pytest.raises(ValueError, match="random_mask: p must be"):
        random_mask(2, 3, 1.5)
    sim = Simulator(net)
    with pytest.raises(ValueError, match="no synapse"):
        sim.set_weights("a_to_b", np.ones((2, 3)))
    with pytest.raises(ValueError, match="event_driven must be"):
        Simulator(net, event_driven="sometimes")


def test_mask_survives_model_file(tmp_path):
    mask = random_mask(40, 60, 0.3, seed=2)
    net = _net(RULES["stdp"], mask=mask)
    _, _, sim = _run(net, True, steps=50)
    path = tmp_path / "m.h5"
    save(path, sim)
    back = load(path)
    assert np.array_equal(back.network.projections["ff"].mask, mask)
    assert np.array_equal(back.network.projections["rec"].mask, net.projections["rec"].mask)
    from neuro.io import describe
    import h5py
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 2  # an older neuro refuses it rather than read it dense
    assert f"sparse: {mask.sum():,} of 2,400 possible synapses ({100 * mask.sum() / 2400:.3g} %)" in describe(path)


def test_corrupt_mask_in_model_file_is_refused(tmp_path):
    import h5py
    from neuro.io import ModelFileError
    net = _net(RULES["stdp"], mask=random_mask(40, 60, 0.3, seed=2))
    path = tmp_path / "m.h5"
    save(path, Simulator(net))
    with h5py.File(path, "r+") as f:
        data = f["connectivity/ff"][()]
        data[0, 0] = 2
        del f["connectivity/ff"]
        f["connectivity/ff"] = data
    with pytest.raises(ModelFileError, match="must hold 0 or 1"):
        load(path)
    with h5py.File(path, "r+") as f:
        del f["connectivity/ff"]
    with pytest.raises(ModelFileError, match="connectivity/ff"):
        load(path)
    with h5py.File(path, "r+") as f:
        f["connectivity/ff"] = data.clip(0, 1)
        f.attrs["format_version"] = 1
    with pytest.raises(ModelFileError, match="format_version 1 cannot hold"):
        load(path)


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_steps_match_eager():
    """``compile=True`` (torch.compile; C++ kernels on CPU) runs the same simulation as the eager engine:
    Poisson-encoded input, a plastic masked projection, recurrent inhibition, float64."""
    from neuro import PoissonEncoder

    mask = random_mask(30, 40, 0.5, seed=4)
    net = Network(dt=1e-3)
    net.input("inp", 40, encoder=PoissonEncoder(max_rate=100.0))
    net.population("out", 30, LIF(tau_mem=20e-3, tau_syn=5e-3))
    net.connect("inp", "out", np.random.default_rng(0).uniform(0, 0.8, (30, 40)) * mask, mask=mask,
                rule=stdp(a_plus=0.02, a_minus=0.021), name="ff")
    net.connect("out", "out", -0.3 * (1 - np.eye(30)), name="rec")
    values = np.random.default_rng(1).random(40)
    runs = {}
    for compiled in (False, True):
        sim = Simulator(net, replicas=2, dtype=torch.float64, seed=5, compile=compiled)
        rec = sim.run(60, inputs={"inp": values}, monitors=["out.spikes"])
        runs[compiled] = (rec["out.spikes"], sim.weights("ff").clone())
    assert runs[False][0].sum() > 20
    assert torch.equal(runs[True][0], runs[False][0])
    torch.testing.assert_close(runs[True][1], runs[False][1], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="event_driven=True cannot be compiled"):
        Simulator(net, compile=True, event_driven=True)


def test_synapse_lists_find_exactly_the_synapses_of_given_neurons():
    from neuro.plasticity import SynapseLists

    mask = torch.as_tensor(random_mask(7, 9, 0.3, seed=3))
    lists = SynapseLists(mask)
    rows = torch.tensor([5, 0, 3])
    post, pre = lists.rows(rows)
    assert sorted(zip(post.tolist(), pre.tolist())) == sorted(
        (p, q) for p in rows.tolist() for q in range(9) if mask[p, q])
    cols = torch.tensor([8, 2])
    post, pre, k = lists.cols(cols)
    assert sorted(zip(post.tolist(), pre.tolist())) == sorted(
        (p, q) for q in cols.tolist() for p in range(7) if mask[p, q])
    assert torch.equal(cols[k], pre)
    assert lists.rows(torch.tensor([], dtype=torch.long))[0].numel() == 0


def test_event_driven_learning_of_weights_given_in_another_memory_layout():
    mask = random_mask(40, 60, 0.3, seed=2)
    net = _net(RULES["stdp"], mask=mask, w_scale=0.8)
    w = torch.as_tensor(0.5 * mask.T.copy(), dtype=torch.float64).T  # a transposed (non-contiguous) view
    runs = {}
    for mode in (False, True):
        sim = Simulator(net, dtype=torch.float64, event_driven=mode)
        sim.set_weights("ff", w)
        sim.run(100, inputs={"inp": (torch.rand(100, 60, generator=torch.Generator().manual_seed(0)) < 0.08).double()})
        runs[mode] = sim.weights("ff")
    torch.testing.assert_close(runs[True], runs[False], rtol=1e-12, atol=1e-12)
