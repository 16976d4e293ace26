"""Model files: exact resumption, round trips, atomic writes and clear errors on bad files."""
import json

import h5py
import numpy as np
import pytest
import torch

from neuro import LIF, LearningRule, Network, PoissonEncoder, Simulator, standard_rules
from neuro.io import FORMAT, ModelFileError, describe, load, save

R = 3
MONITORS = [
    "exc.spikes",
    "exc.v",
    "out.spikes",
    "out.v",
    "ff.w",
    "ff.x1",
    "ff.y1",
    "rew.w",
    "rew.t",
    "rew.y2",
]


def build(t_epoch: int = 1) -> Network:
    """Poisson input -> LIF (STDP) with static inhibitory recurrence, and a reward-modulated projection."""
    rng = np.random.default_rng(1)
    net = Network(dt=1e-3, name="io_test")
    net.input("inp", 16, PoissonEncoder(max_rate=150.0))
    net.population("exc", 8, LIF(tau_mem=10e-3, tau_syn=5e-3, theta_plus=0.05, tau_theta=0.1))
    net.population("out", 5, LIF())
    net.connect("inp", "exc", rng.uniform(0.2, 0.8, (8, 16)), standard_rules.stdp(t_epoch=t_epoch), name="ff")
    # per-replica (R, post, pre) static inhibition
    net.connect("exc", "exc", -rng.uniform(0.0, 0.4, (R, 8, 8)), name="inh")
    net.connect(
        "inp",
        "out",
        rng.uniform(0.2, 0.8, (R, 5, 16)),
        standard_rules.reward_modulated_stdp(a_plus=0.05, a_minus=0.04, t_epoch=t_epoch),
        name="rew",
    )
    return net


def drive(steps: int, offset: int):
    """Held input rates and a per-step reward sequence (steps, R, 5) that changes sign."""
    rates = torch.linspace(0.2, 1.0, 16).expand(R, 16)
    k = torch.arange(offset, offset + steps, dtype=torch.float32)
    reward = torch.sin(k / 7.0)[:, None, None].expand(steps, R, 5).contiguous()
    return {"inp": rates}, {"out": reward}


def run(sim: Simulator, steps: int, offset: int):
    inputs, third = drive(steps, offset)
    return sim.run(steps, inputs=inputs, third_factors=third, monitors=MONITORS)


@pytest.fixture
def model_file(tmp_path):
    sim = Simulator(build(), replicas=R, seed=3)
    run(sim, 40, 0)
    path = tmp_path / "model.h5"
    save(path, sim, metadata={"dataset": "synthetic", "epochs": 1})
    return path


@pytest.mark.parametrize("t_epoch", [1, 4])  # 4 does not divide 150: saved mid-epoch
def test_save_load_continue_is_identical_to_an_uninterrupted_run(tmp_path, t_epoch):
    straight = Simulator(build(t_epoch), replicas=R, seed=7)
    whole = run(straight, 300, 0)

    first = Simulator(build(t_epoch), replicas=R, seed=7)
    a = run(first, 150, 0)
    path = tmp_path / "mid.h5"
    save(path, first)
    resumed = load(path)
    assert resumed.time_step == 150 and resumed.dtype == torch.float32 and resumed.replicas == R
    b = run(resumed, 150, 150)

    for m in MONITORS:
        joined = torch.cat([a[m], b[m]])
        assert torch.equal(joined, whole[m]), m
    # the run was not trivial: spikes, learning, tags and the reward all mattered
    assert whole["exc.spikes"].sum() > 0 and whole["out.spikes"].sum() > 0
    assert not torch.equal(whole["ff.w"][0], whole["ff.w"][-1])
    assert whole["rew.t"].abs().max() > 0
    assert not torch.equal(whole["rew.w"][0], whole["rew.w"][-1])
    # and every piece of state, RNG included, is bit-identical at the end
    s1, s2 = straight.state_dict(), resumed.state_dict()
    assert s1.keys() == s2.keys()
    for k in s1:
        assert np.array_equal(s1[k], s2[k]), k


def test_file_round_trips_rules_network_and_settings(tmp_path, model_file):
    net = build()
    with h5py.File(model_file, "r") as f:
        assert f.attrs["format"].decode() == FORMAT and f.attrs["format_version"] == 1
        data = json.loads(f["network"].asstr()[()])
        assert data == json.loads(json.dumps(net.to_data()))
        for p in data["projections"]:
            original = net.projections[p["name"]].rule
            if original is None:
                assert p["rule"] is None
            else:
                assert LearningRule.from_data(p["rule"]) == original
        for name, proj in net.projections.items():
            assert np.array_equal(f["initial_weights"][name][()], proj.weights)
        assert json.loads(f["metadata"].asstr()[()]) == {"dataset": "synthetic", "epochs": 1}
    sim = load(model_file, dtype=torch.float64)
    assert sim.dtype == torch.float64 and sim.seed == 3 and sim.time_step == 40
    assert sim.weights("inh").shape == (R, 8, 8) and sim.weights("ff").shape == (8, 16)
    assert sim.network.to_data() == net.to_data()
    for name, proj in net.projections.items():
        assert np.array_equal(sim.network.projections[name].weights, proj.weights)


def _leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name != "model.h5")


def test_failed_save_leaves_the_existing_file_intact_and_no_temp_files(tmp_path, model_file, monkeypatch):
    before = model_file.read_bytes()
    sim = Simulator(build(), replicas=R, seed=3)

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    # fails while the temporary file is being written ...
    monkeypatch.setattr(sim, "state_dict", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        save(model_file, sim)
    assert model_file.read_bytes() == before and _leftovers(tmp_path) == []
    monkeypatch.undo()

    # ... and after it was completely written, at the rename
    monkeypatch.setattr("neuro.io.os.replace", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        save(model_file, sim)
    monkeypatch.undo()
    assert model_file.read_bytes() == before and _leftovers(tmp_path) == []
    assert load(model_file).time_step == 40

    # bad metadata is refused before any file is created
    with pytest.raises(ValueError, match="metadata"):
        save(tmp_path / "other.h5", sim, metadata={"x": float("nan")})
    assert _leftovers(tmp_path) == []


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no such file") as e:
        load(tmp_path / "nope.h5")
    assert "nope.h5" in str(e.value)


def test_text_file(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("this is not a model\n")
    with pytest.raises(ModelFileError, match="not an HDF5 file"):
        load(path)
    with pytest.raises(ModelFileError, match="not an HDF5 file"):
        describe(path)


def test_truncated_file(tmp_path, model_file):
    data = model_file.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="damaged or truncated") as e:
        load(cut)
    assert "cut.h5" in str(e.value)


def test_foreign_hdf5_file(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f["weights"] = np.ones((3, 3))
    with pytest.raises(ModelFileError, match="not a neuro model file.*no format marker"):
        load(path)
    with h5py.File(path, "r+") as f:
        f.attrs["format"] = "someone.else"
    with pytest.raises(ModelFileError, match="format marker 'someone.else'"):
        load(path)


def test_wrong_format_version(model_file):
    with h5py.File(model_file, "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(ModelFileError, match="unsupported format_version 99"):
        load(model_file)


def test_nan_in_weights_names_the_dataset(model_file):
    with h5py.File(model_file, "r+") as f:
        w = f["state/synapses/ff/w"]
        w[0, 0, 0] = np.nan
    with pytest.raises(ModelFileError, match=r"'/state/synapses/ff/w' contains NaN"):
        load(model_file)
    with pytest.raises(ModelFileError, match=r"'/state/synapses/ff/w' contains NaN"):
        describe(model_file)


def test_missing_dataset_and_wrong_types(model_file):
    with h5py.File(model_file, "r+") as f:
        del f["state/plasticity/rew/x"]
    with pytest.raises(ModelFileError, match=r"missing dataset '/state/plasticity/rew/x'"):
        load(model_file)
    with h5py.File(model_file, "r+") as f:
        f["state/plasticity/rew/x"] = np.array([b"a", b"b"], dtype=object)  # strings, not numbers
    with pytest.raises(ModelFileError, match=r"'/state/plasticity/rew/x' must be a numeric array"):
        load(model_file)


def test_malformed_json_and_rule_data(model_file):
    with h5py.File(model_file, "r") as f:
        data = json.loads(f["network"].asstr()[()])
    with h5py.File(model_file, "r+") as f:
        del f["network"]
        f.create_dataset("network", data="{not json", dtype=h5py.string_dtype())
    with pytest.raises(ModelFileError, match="'/network' is not valid JSON"):
        load(model_file)

    data["projections"][0]["rule"]["dw"] = {"op": "__import__", "args": []}
    with h5py.File(model_file, "r+") as f:
        del f["network"]
        f.create_dataset("network", data=json.dumps(data), dtype=h5py.string_dtype())
    with pytest.raises(ModelFileError, match="malformed rule data") as e:
        load(model_file)
    assert "model.h5" in str(e.value)


def test_describe_summarizes_the_model(model_file):
    text = describe(model_file)
    for expected in (
        "format: neuro.model version 1",
        "replicas = 3",
        "inp: 16 neurons, input, PoissonEncoder(max_rate=150)",
        "exc: 8 neurons, LIF(",
        "out: 5 neurons",
        "ff: inp -> exc, weights 8x16 (shared by all replicas)",
        "inh: exc -> exc, weights 3x8x8 (per replica)",
        "stdp_additive",
        "reward_modulated_stdp",
        "static",
        "time step reached: 40 steps = 0.04 s",
        "dataset: \"synthetic\"",
    ):
        assert expected in text, (expected, text)


def reseal(path) -> None:
    """Write the checksum of a file edited to look as if saved elsewhere (what save would have written)."""
    from neuro.io import _digest

    with h5py.File(path, "r+") as f:
        texts = [f[k][()].decode() if k in f else None for k in ("network", "models", "metadata")]
        a = f["settings"].attrs
        value = lambda k: a[k].decode() if isinstance(a[k], bytes) else a[k]  # noqa: E731
        f.attrs["checksum"] = _digest(*texts, value("replicas"), value("dtype"), value("seed"), value("dt"),
                                      value("learning"), value("rng_device"), f["state/time_step"][()])


def test_generator_state_from_another_device_is_reseeded_with_a_warning(model_file):
    # As if saved on CUDA: a CUDA generator's state is 16 bytes (seed, offset).
    with h5py.File(model_file, "r+") as f:
        f["settings"].attrs["rng_device"] = "cuda"
        del f["state/rng_state"]
        f["state/rng_state"] = np.zeros(16, dtype=np.uint8)
    reseal(model_file)
    with pytest.warns(RuntimeWarning, match="reseeded with seed 3"):
        sim = load(model_file)
    assert sim.time_step == 40
    run(sim, 5, 40)  # the generator works


def test_bfloat16_simulator_round_trips(tmp_path):
    net = Network(dt=1e-3)
    net.input("inp", 4)
    net.population("out", 3)
    net.connect("inp", "out", 0.4, rule=standard_rules.stdp())
    sim = Simulator(net, dtype=torch.bfloat16)
    sim.run(20, {"inp": torch.ones(20, 4)})
    save(tmp_path / "bf16.h5", sim)
    back = load(tmp_path / "bf16.h5")
    assert back.dtype == torch.bfloat16
    assert torch.equal(back.weights("inp_to_out"), sim.weights("inp_to_out"))


def test_a_swapped_neuron_model_is_saved_and_swapped_in_again(tmp_path):
    """Simulator.set_model (e.g. the spiking PC's fine-tuning leak) survives save/load: the run continues exactly."""
    net = build()
    a = Simulator(net, replicas=R, seed=3)
    run(a, 40, 0)
    a.set_model("out", LIF(tau_mem=40e-3, syn_leak="none"))
    save(tmp_path / "m.h5", a)
    b = load(tmp_path / "m.h5")
    assert b.models["out"] == a.models["out"] and b.models["exc"] == net.populations["exc"].model
    x, y = run(a, 30, 40), run(b, 30, 40)
    for m in MONITORS:
        torch.testing.assert_close(y[m], x[m], rtol=0, atol=0)
    with h5py.File(tmp_path / "m.h5") as f:
        assert f.attrs["format_version"] == 3  # older versions of neuro refuse it rather than lose the model
    assert "stepped now with LIF(tau_mem=0.04" in describe(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r+") as f:
        del f["models"]
        text = json.dumps({"inp": {"type": "LIF"}}).encode()
        f["models"] = np.array(text, dtype=h5py.string_dtype("utf-8", len(text)))
    with pytest.raises(ModelFileError, match="'inp', which is not a neuron population"):
        load(tmp_path / "m.h5")


def test_values_beyond_the_dtype_and_a_damaged_replica_count_are_refused(tmp_path, model_file):
    with h5py.File(model_file, "r+") as f:
        w = f["state/synapses/ff/w"][()]
        del f["state/synapses/ff/w"]
        f["state/synapses/ff/w"] = np.full(w.shape, 1e300)  # finite in the file's float64
    with pytest.raises(ModelFileError, match=r"'synapses/ff/w': values up to 1e\+300 do not fit torch.float32"):
        load(model_file)
    net = Network(dt=1e-3)
    net.input("i", 2)
    net.population("o", 2)
    net.connect("i", "o", 1e5)
    save(tmp_path / "big.h5", Simulator(net))
    with pytest.raises(ModelFileError, match="'i_to_o': weights up to 100000 do not fit torch.float16"):
        load(tmp_path / "big.h5", dtype=torch.float16)
    assert load(tmp_path / "big.h5").weights("i_to_o").max() == 1e5
    with h5py.File(tmp_path / "big.h5", "r+") as f:
        f["settings"].attrs["replicas"] = np.int64(10**12)  # would allocate terabytes
    with pytest.raises(ModelFileError, match="damaged: its network description, settings or time step do not match"):
        load(tmp_path / "big.h5")
    with h5py.File(tmp_path / "big.h5", "r+") as f:
        del f.attrs["checksum"]  # as a file written before checksums
    with pytest.raises(ModelFileError, match=r"'/state/spikes/i' has shape \(1, 2\), but /settings says 1000000000000"):
        load(tmp_path / "big.h5")


@pytest.mark.parametrize("edit", ["network", "metadata", "seed", "time_step"])
def test_damage_outside_the_arrays_is_caught_by_the_checksum(model_file, edit):
    """One changed byte in the description, a setting or the time step: loading and describing refuse the file."""
    with h5py.File(model_file, "r+") as f:
        if edit in ("network", "metadata"):
            text = f[edit][()].decode()
            changed = text.replace("0.01", "0.09", 1) if edit == "network" else text.replace("1", "2", 1)
            assert changed != text
            del f[edit]
            f[edit] = np.array(changed.encode(), dtype=h5py.string_dtype("utf-8", len(changed.encode())))
        elif edit == "seed":
            f["settings"].attrs["seed"] = np.int64(4)
        else:
            del f["state/time_step"]
            f["state/time_step"] = np.int64(41)
    for read in (load, describe):
        with pytest.raises(ModelFileError, match="damaged"):
            read(model_file)
    reseal(model_file)  # the same edits, as save would have written them, load
    load(model_file)


@pytest.mark.parametrize("event_driven", [True, False])
def test_a_run_continues_bit_for_bit_with_the_propagation_it_was_saved_with(tmp_path, event_driven):
    straight = Simulator(build(), replicas=R, seed=3, event_driven=event_driven)
    first = Simulator(build(), replicas=R, seed=3, event_driven=event_driven)
    run(straight, 40, 0)
    run(first, 40, 0)
    save(tmp_path / "m.h5", first)
    resumed = load(tmp_path / "m.h5", event_driven=event_driven)
    x, y = run(straight, 60, 40), run(resumed, 60, 40)
    for m in MONITORS:
        torch.testing.assert_close(y[m], x[m], rtol=0, atol=0)
    with pytest.raises(ValueError, match="event_driven must be True, False or 'auto'"):
        load(tmp_path / "m.h5", event_driven="sometimes")
