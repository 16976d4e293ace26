"""NIR export/import (export/nir.py): agreement with Norse's NIR importer, round trips, errors.

Timing: neuro delays every projection by one step, Norse (nirtorch) propagates a feed-forward
edge within the step. With the same input spikes, a population at depth d (d projections from
the input) spikes d steps later in neuro: ``ours[k + d] == norse[k]``. The tests run neuro d
steps longer (input padded with zeros) and compare the shifted trains exactly.
"""
import warnings

import nir
import numpy as np
import pytest
import torch

import neuro
from neuro import IAF, LIF, Network, Simulator, standard_rules
from export.nir import (
    NIRExportError,
    NIRExportWarning,
    NIRImportError,
    NIRImportWarning,
    PlasticityNotExportedWarning,
    from_nir,
    norse_caveats,
    to_nir,
    write_nir,
)

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=FutureWarning)
    import norse.torch

DT = 1e-3
STEPS = 500


def f32(a):
    """Values Norse's importer (which casts parameters to float32) stores exactly."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def spikes(steps, n, p, seed):
    return (np.random.default_rng(seed).random((steps, n)) < p).astype(np.float64)


def run_ours(net, inputs, steps, extra=0):
    """Spikes and voltages (steps + extra, n) per population; inputs padded with ``extra`` zero steps."""
    sim = Simulator(net, dtype=torch.float64)
    padded = {k: np.concatenate([v, np.zeros((extra, v.shape[1]))]) for k, v in inputs.items()}
    pops = [p.name for p in net.populations.values() if isinstance(p, neuro.Population)]
    rec = sim.run(steps + extra, padded, monitors=[f"{p}.{x}" for p in pops for x in ("spikes", "v")])
    return {p: rec[f"{p}.spikes"][:, 0].numpy() for p in pops}, {p: rec[f"{p}.v"][:, 0].numpy() for p in pops}


def run_norse(graph, x, pops, dt=DT):
    """Norse's module for ``graph`` driven by ``x`` (steps, n_in); spikes and voltages per population."""
    with warnings.catch_warnings():  # Norse 1.1 calls nirtorch.load, which nirtorch 2.6 deprecates
        warnings.simplefilter("ignore", DeprecationWarning)
        module = norse.torch.from_nir(graph, dt=dt, ignore_warnings=True).double()
    state = None
    z = {p: [] for p in pops}
    v = {p: [] for p in pops}
    with torch.no_grad():
        for k in range(x.shape[0]):
            _, state = module(torch.as_tensor(x[k]), state)
            for p in pops:
                z[p].append(state.cache[p].numpy().copy())
                s = state.state[p][0]  # CubaLIF: (synapse state, LIFBox state); IF: IAFFeedForwardState
                v[p].append((s.v if hasattr(s, "v") else s[1].v).numpy().copy())
    return {p: np.stack(z[p]) for p in pops}, {p: np.stack(v[p]) for p in pops}


def assert_matches_norse(net, graph, x, depths, min_spikes=50):
    pops = list(depths)
    extra = max(depths.values())
    ours_z, ours_v = run_ours(net, {"x": x}, STEPS, extra)
    nz, nv = run_norse(graph, x, pops)
    for p, d in depths.items():
        assert ours_z[p][:d].sum() == 0, f"{p}: spikes before any input could arrive"
        n_spikes = int(nz[p].sum())
        assert n_spikes > min_spikes, f"{p}: only {n_spikes} spikes, the comparison says little"
        mismatch = np.argwhere(ours_z[p][d : d + STEPS] != nz[p])
        assert mismatch.size == 0, f"{p}: spike trains differ first at (step, neuron) {mismatch[0]}"
        np.testing.assert_allclose(ours_v[p][d : d + STEPS], nv[p], atol=1e-5, err_msg=p)


# --- (a) one layer, written to and read from a file, run by Norse ---------------------------------
def test_input_to_lif_through_a_nir_file_matches_norse(tmp_path):
    rng = np.random.default_rng(1)
    net = Network(dt=DT, name="one_layer")
    net.input("x", 20)
    net.population("exc", 10, LIF(tau_mem=10e-3, tau_syn=5e-3, v_th=1.0))
    net.connect("x", "exc", f32(rng.normal(0.15, 0.3, (10, 20))))
    path = tmp_path / "one_layer.nir"
    write_nir(path, net)
    graph = nir.read(str(path))
    assert isinstance(graph.nodes["exc"], nir.CubaLIF)
    assert float(np.asarray(graph.metadata["dt"])) == DT
    assert norse_caveats(graph) == []
    assert_matches_norse(net, graph, spikes(STEPS, 20, 0.1, seed=2), {"exc": 1})


# --- (c) two layers (and an IAF layer with a recurrent inhibitory projection) ----------------------
def test_two_lif_layers_match_norse_with_one_step_shift_per_layer():
    rng = np.random.default_rng(3)
    net = Network(dt=DT)
    net.input("x", 16)
    net.population("h", 12, LIF(tau_mem=20e-3, tau_syn=5e-3))
    net.population("o", 8, LIF(tau_mem=10e-3, tau_syn=2e-3, v_th=0.8))
    net.connect("x", "h", f32(rng.normal(0.2, 0.3, (12, 16))))
    net.connect("h", "o", f32(rng.normal(0.6, 0.4, (8, 12))))
    graph = to_nir(net)
    assert norse_caveats(graph) == []
    assert [int(graph.nodes[p].metadata["neuro_depth"]) for p in ("x", "h", "o")] == [0, 1, 2]
    assert_matches_norse(net, graph, spikes(STEPS, 16, 0.1, seed=4), {"h": 1, "o": 2})


def test_recurrent_projection_and_iaf_layer_match_norse():
    rng = np.random.default_rng(5)
    net = Network(dt=DT)
    net.input("x", 16)
    net.population("h", 12, LIF(tau_mem=10e-3, tau_syn=5e-3))
    net.population("o", 6, IAF(v_th=1.5))
    net.connect("x", "h", f32(rng.normal(0.3, 0.3, (12, 16))))
    net.connect("h", "h", f32(-0.3 * rng.random((12, 12))), name="inhibition")
    net.connect("h", "o", f32(rng.normal(0.25, 0.2, (6, 12))))
    graph = to_nir(net)
    assert isinstance(graph.nodes["o"], nir.IF) and np.allclose(graph.nodes["o"].r * DT, 1.0)
    assert norse_caveats(graph) == []
    # Norse (nirtorch) delays the edge that closes the cycle by one step, as neuro does.
    assert_matches_norse(net, graph, spikes(STEPS, 16, 0.1, seed=6), {"h": 1, "o": 2})


def test_foreign_graph_with_lif_if_and_affine_nodes_matches_norse():
    """A graph written by hand in NIR's own terms (LIF without synaptic current, IF, Affine)."""
    rng = np.random.default_rng(7)
    n_in, n_h, n_o = 12, 10, 5
    ones = np.ones
    graph = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type={"input": np.array([n_in])}),
            "fc1": nir.Affine(weight=f32(rng.normal(0.3, 0.4, (n_h, n_in))), bias=np.zeros(n_h)),
            "lif": nir.LIF(tau=ones(n_h) * 8e-3, r=ones(n_h), v_leak=np.zeros(n_h), v_threshold=ones(n_h) * 0.2),
            "fc2": nir.Linear(weight=f32(rng.normal(0.4, 0.2, (n_o, n_h)))),
            "if": nir.IF(r=ones(n_o) / DT, v_threshold=ones(n_o), v_reset=np.zeros(n_o)),
            "out": nir.Output(output_type={"output": np.array([n_o])}),
        },
        edges=[("in", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "if"), ("if", "out")],
    )
    assert norse_caveats(graph, dt=DT) == []
    net = from_nir(graph, dt=DT)
    assert list(net.populations) == ["in", "lif", "if"]
    assert net.populations["lif"].model == LIF(tau_mem=8e-3, tau_syn=DT, v_th=0.2)
    x = spikes(STEPS, n_in, 0.15, seed=8)
    ours_z, _ = run_ours(net, {"in": x}, STEPS, extra=2)
    nz, _ = run_norse(graph, x, ["lif", "if"])
    assert nz["lif"].sum() > 50 and nz["if"].sum() > 50
    np.testing.assert_array_equal(ours_z["lif"][1 : 1 + STEPS], nz["lif"])
    np.testing.assert_array_equal(ours_z["if"][2 : 2 + STEPS], nz["if"])


# --- (b) round trip -----------------------------------------------------------------------------
def layered_network():
    rng = np.random.default_rng(9)
    net = Network(dt=DT, name="layered")
    net.input("x", 10)
    net.input("y", 4)
    net.population("a", 8, LIF(tau_mem=15e-3, tau_syn=4e-3, v_th=0.9, v_reset=-0.1, v_leak=0.05))
    net.population("b", 5, IAF(v_th=1.2, v_reset=0.1))
    net.connect("x", "a", rng.normal(0.3, 0.3, (8, 10)))
    net.connect("y", "a", rng.normal(0.2, 0.3, (8, 4)))
    net.connect("a", "a", -0.2 * rng.random((8, 8)), name="rec")
    net.connect("a", "b", rng.normal(0.4, 0.2, (5, 8)))
    return net


def skip_network():
    rng = np.random.default_rng(10)
    net = Network(dt=DT, name="skip")
    net.input("x", 10)
    net.population("a", 8)
    net.population("b", 6)
    net.connect("x", "a", rng.normal(0.3, 0.3, (8, 10)))
    net.connect("a", "b", rng.normal(0.3, 0.3, (6, 8)))
    net.connect("x", "b", rng.normal(0.1, 0.2, (6, 10)), name="skip")
    return net


@pytest.mark.parametrize(
    "make, delays", [(layered_network, "implicit"), (layered_network, "explicit"), (skip_network, "explicit")]
)
def test_round_trip_gives_the_same_network_and_the_same_spikes(tmp_path, make, delays):
    net = make()
    path = tmp_path / "net.nir"
    write_nir(path, net, delays=delays)
    back = from_nir(path)
    assert back.dt == net.dt and back.name == net.name
    assert list(back.populations) == list(net.populations)
    assert list(back.projections) == list(net.projections)
    for name, pop in net.populations.items():
        other = back.populations[name]
        assert type(other) is type(pop) and other.n == pop.n
        assert getattr(other, "model", None) == getattr(pop, "model", None)
    for name, proj in net.projections.items():
        other = back.projections[name]
        assert (other.pre, other.post, other.rule) == (proj.pre, proj.post, None)
        np.testing.assert_array_equal(other.weights, proj.weights)
    sources = [p for p in net.populations.values() if isinstance(p, neuro.InputPopulation)]
    inputs = {p.name: spikes(300, p.n, 0.15, seed=i) for i, p in enumerate(sources)}
    a, _ = run_ours(net, inputs, 300)
    b, _ = run_ours(back, inputs, 300)
    assert sum(z.sum() for z in a.values()) > 50
    for p in a:
        np.testing.assert_array_equal(a[p], b[p], err_msg=p)


# --- (d) plastic projections export their current weights --------------------------------------
def test_plastic_projection_exports_current_weights_and_warns_the_rule_is_not_in_nir():
    rng = np.random.default_rng(11)
    net = Network(dt=DT)
    net.input("x", 12)
    net.population("a", 6)
    w0 = rng.uniform(0.2, 0.6, (6, 12))
    net.connect("x", "a", w0, rule=standard_rules.stdp(a_plus=0.02, a_minus=0.02))
    sim = Simulator(net, dtype=torch.float64)
    sim.run(200, {"x": spikes(200, 12, 0.1, seed=12)})
    w_now = sim.weights("x_to_a").numpy()
    assert not np.allclose(w_now, w0)
    with pytest.warns(PlasticityNotExportedWarning, match=r"'x_to_a' \(rule 'stdp_additive'\).*neuro\.save"):
        graph = to_nir(sim)
    np.testing.assert_array_equal(graph.nodes["x_to_a"].weight, w_now)
    assert graph.nodes["x_to_a"].metadata["neuro_rule"] == "stdp_additive"
    with pytest.warns(PlasticityNotExportedWarning):
        assert np.array_equal(to_nir(net).nodes["x_to_a"].weight, w0)  # a Network gives its initial weights
    # The imported network is the trained one with learning frozen.
    static = from_nir(graph)
    assert static.projections["x_to_a"].rule is None
    frozen = Simulator(net, dtype=torch.float64)
    frozen.learning = False
    frozen.set_weights("x_to_a", w_now)
    x = spikes(300, 12, 0.15, seed=13)
    a = frozen.run(300, {"x": x}, monitors=["a.spikes"])["a.spikes"]
    b = Simulator(static, dtype=torch.float64).run(300, {"x": x}, monitors=["a.spikes"])["a.spikes"]
    assert a.sum() > 20
    assert torch.equal(a, b)


# --- (e) what NIR (or neuro) cannot express -------------------------------------------------------
def test_per_replica_weights_need_a_replica_index():
    net = Network(dt=DT)
    net.input("x", 3)
    net.population("a", 2)
    w = np.arange(3 * 2 * 3, dtype=float).reshape(3, 2, 3)
    net.connect("x", "a", w)
    with pytest.raises(NIRExportError, match=r"'x_to_a' has one weight matrix per replica \(3 replicas\).*replica="):
        to_nir(net)
    np.testing.assert_array_equal(to_nir(net, replica=1).nodes["x_to_a"].weight, w[1])
    with pytest.raises(NIRExportError, match="out of range"):
        to_nir(net, replica=3)


def test_graphs_that_a_delay_free_nir_graph_cannot_time_are_refused():
    different_lengths = r"population 'b' is reached by paths of different lengths.*delays='explicit'"
    with pytest.raises(NIRExportError, match=different_lengths):
        to_nir(skip_network())
    net = Network(dt=DT)
    net.input("x", 3)
    net.population("a", 2)
    net.population("b", 2)
    net.connect("x", "a", 0.5)
    net.connect("a", "b", 0.5)
    net.connect("b", "a", 0.5)
    with pytest.raises(NIRExportError, match=r"cycle through several populations \(a -> b -> a\)"):
        to_nir(net)
    graph = to_nir(net, delays="explicit")
    assert any(isinstance(n, nir.Delay) for n in graph.nodes.values())
    assert any("Delay" in c for c in norse_caveats(graph))
    back = from_nir(graph)
    assert [(p.pre, p.post) for p in back.projections.values()] == [("x", "a"), ("a", "b"), ("b", "a")]


def test_adaptive_threshold_is_refused_unless_frozen():
    net = Network(dt=DT)
    net.input("x", 4)
    net.population("a", 3, LIF(theta_plus=0.05, tau_theta=1.0))
    net.connect("x", "a", 0.6)
    with pytest.raises(NIRExportError, match=r"'a'.*theta_plus=0.05.*freeze_theta=True"):
        to_nir(net)
    sim = Simulator(net, dtype=torch.float64)
    sim.run(100, {"x": spikes(100, 4, 0.3, seed=14)})
    theta = sim.state["a"]["theta"][0].numpy()
    assert theta.max() > 0
    graph = to_nir(sim, freeze_theta=True)
    np.testing.assert_array_equal(graph.nodes["a"].v_threshold, 1.0 + theta)


def _graph(neuron, n=3, n_in=2, weight=None):
    return nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type={"input": np.array([n_in])}),
            "w": weight if weight is not None else nir.Linear(weight=np.ones((n, n_in))),
            "cell": neuron,
            "out": nir.Output(output_type={"output": np.array([n])}),
        },
        edges=[("in", "w"), ("w", "cell"), ("cell", "out")],
    )


def test_from_nir_names_unsupported_node_types_and_parameters():
    ones = np.ones(3)
    li = nir.LI(tau=ones, r=ones, v_leak=0 * ones)
    with pytest.raises(NIRImportError, match=r"unsupported NIR node type\(s\) LI \('cell'\)"):
        from_nir(_graph(li), dt=DT)
    cuba = dict(tau_syn=ones * 5e-3, tau_mem=ones * 1e-2, r=ones, v_leak=0 * ones, v_threshold=ones)
    with pytest.raises(NIRImportError, match=r"'cell' \(CubaLIF\): tau_mem differs between neurons"):
        from_nir(_graph(nir.CubaLIF(**{**cuba, "tau_mem": np.array([1e-2, 2e-2, 1e-2])})), dt=DT)
    with pytest.raises(NIRImportError, match="non-zero bias"):
        from_nir(_graph(nir.CubaLIF(**cuba), weight=nir.Affine(weight=np.ones((3, 2)), bias=ones)), dt=DT)
    with pytest.raises(NIRImportError, match=r"does not say its time step: pass dt="):
        from_nir(_graph(nir.CubaLIF(**cuba)))
    # r and w_in may vary between neurons: they scale the incoming weights.
    net = from_nir(_graph(nir.CubaLIF(**{**cuba, "w_in": np.array([5.0, 10.0, 2.5])})), dt=DT)
    np.testing.assert_allclose(net.projections["w"].weights, np.array([[1.0], [2.0], [0.5]]) * np.ones((3, 2)))


def test_norse_caveats_flag_parameters_norse_ignores():
    net = Network(dt=DT)
    net.input("x", 3)
    net.population("a", 2, LIF(v_reset=-0.5, v_leak=0.1))
    net.connect("x", "a", 0.5)
    caveats = norse_caveats(to_nir(net))
    assert any("v_reset" in c for c in caveats) and any("v_leak" in c for c in caveats)
    assert from_nir(to_nir(net)).populations["a"].model == LIF(v_reset=-0.5, v_leak=0.1)


def test_encoders_are_not_exported_and_inexact_lif_import_warns():
    net = Network(dt=DT)
    net.input("x", 3, neuro.PoissonEncoder())
    net.population("a", 2)
    net.connect("x", "a", 0.5)
    with pytest.warns(NIRExportWarning, match=r"input 'x' has a PoissonEncoder.*encode values into spikes"):
        graph = to_nir(net)
    assert isinstance(graph.nodes["x"], nir.Input)
    ones = np.ones(3)
    lif = nir.LIF(tau=ones * 1e-2, r=ones, v_leak=0 * ones, v_threshold=ones)
    assert 1e-5 * (1 / 1e-5) != 1.0
    with pytest.warns(NIRImportWarning, match="tau_syn = dt"):
        from_nir(_graph(lif), dt=1e-5)


@pytest.mark.parametrize("model, gated, match", [
    (LIF(i_min=0.0, i_max=1.0), False, r"'a'.*saturates at \[0, 1\]"),
    (LIF(gate_min=0.0, gate_max=1.0), True, r"'a'.*gated input passes only while its current lies in \(0, 1\)"),
    (LIF(subtract_reset=True), False, r"'a'.*resets by subtracting"),
    (LIF(v_min=-1.0), False, r"'a'.*membrane has a floor at -1"),
    (LIF(syn_leak="positive"), False, r"'a'.*current decays only while positive"),
    (LIF(syn_leak="none"), False, r"'a'.*current never decays"),
])
def test_what_cubalif_cannot_express_is_refused(model, gated, match):
    net = Network(dt=DT)
    net.input("x", 4)
    net.population("a", 3, model)
    net.connect("x", "a", 0.6, gated=gated)
    with pytest.raises(NIRExportError, match=match):
        to_nir(net)


def test_a_simulator_exports_the_model_it_steps_with_and_checks_the_replica():
    net = Network(dt=DT)
    net.input("x", 3)
    net.population("a", 2, LIF(tau_mem=10e-3))
    net.connect("x", "a", 0.5)
    sim = Simulator(net, replicas=2)
    sim.set_model("a", LIF(tau_mem=50e-3))
    np.testing.assert_allclose(to_nir(sim).nodes["a"].tau_mem, [50e-3, 50e-3])
    np.testing.assert_allclose(to_nir(net).nodes["a"].tau_mem, [10e-3, 10e-3])
    for bad in (2, -1):
        with pytest.raises(NIRExportError, match=f"replica {bad} is out of range"):
            to_nir(sim, replica=bad)


def test_a_delay_free_graph_that_is_not_layered_is_refused_on_import():
    """NIR's edges without Delay nodes are instantaneous; neuro's projections delay by one step each, so a skip
    connection beside a two-projection path would arrive a step apart: b would never fire."""
    ones = np.ones(1)
    def lif():  # noqa: E306 - v_k = input_k
        return nir.LIF(tau=ones * DT, r=ones, v_leak=0 * ones, v_threshold=ones)
    nodes = {"x": nir.Input(input_type={"input": np.array([1])}), "w1": nir.Linear(weight=np.array([[2.0]])),
             "a": lif(), "w2": nir.Linear(weight=np.array([[0.6]])), "skip": nir.Linear(weight=np.array([[0.6]])),
             "b": lif(), "out": nir.Output(output_type={"output": np.array([1])})}
    edges = [("x", "w1"), ("w1", "a"), ("a", "w2"), ("w2", "b"), ("x", "skip"), ("skip", "b"), ("b", "out")]
    with pytest.raises(NIRImportError, match="must be layered.*paths of different lengths.*add Delay nodes"):
        from_nir(nir.NIRGraph(nodes=nodes, edges=edges), dt=DT)


@pytest.mark.parametrize("field, value, problem", [("v_threshold", np.nan, "v_threshold is NaN"),
                                                   ("v_leak", np.inf, "v_leak must be a finite number"),
                                                   ("tau", 1e-4, r"tau_mem \(0.0001 s\) is shorter than the time step")])
def test_imported_neuron_parameters_that_no_neuro_model_takes_are_named(field, value, problem):
    ones = np.ones(2)
    params = dict(tau=ones * 0.01, r=ones, v_leak=0 * ones, v_threshold=ones)
    params[field] = ones * value
    graph = nir.NIRGraph(
        nodes={"x": nir.Input(input_type={"input": np.array([2])}), "w": nir.Linear(weight=np.eye(2)),
               "a": nir.LIF(**params), "out": nir.Output(output_type={"output": np.array([2])})},
        edges=[("x", "w"), ("w", "a"), ("a", "out")])
    with pytest.raises(NIRImportError, match=f"node 'a' \\(LIF\\): (population 'a': )?{problem}"):
        from_nir(graph, dt=DT)
