"""The benchmark scripts run (quick mode by default) and report what they claim (slow: the full targets)."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neuro.native import compiler

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def _run_softhebb(tmp_path, *args):
    assert _load("softhebb_mnist").main([*args, "--out", str(tmp_path)]) == 0
    return json.loads((tmp_path / "results.json").read_text())


def test_softhebb_benchmark_quick(tmp_path, capsys):
    results = _run_softhebb(tmp_path, "--quick")
    methods = results["methods"]
    assert set(methods) == {"frozen random", "SoftHebb rate, 1 epoch", "SoftHebb spiking, 1 epoch", "backprop, 5 epochs"}
    assert results["n_train"] == 1000 and results["n_test"] == 300
    for row in methods.values():
        assert 0.1 < row["kwta"] <= 1.0 and 0.1 < row["triangle"] <= 1.0
    # Even the small quick run learns: SoftHebb beats the frozen random start.
    assert methods["SoftHebb rate, 1 epoch"]["kwta"] > methods["frozen random"]["kwta"]
    assert methods["SoftHebb spiking, 1 epoch"]["spikes_per_image"] > 0.5
    assert set(results["convergence"]) == {"1", "2"}
    assert results["spiking_spike_count_readout"] > 0.3  # chance is 0.1
    assert (tmp_path / "softhebb_convergence.png").stat().st_size > 5000
    out = capsys.readouterr().out
    assert "SoftHebb - random" in out and "spiking - rate" in out


@pytest.mark.slow
def test_softhebb_meets_the_issue_targets_on_mnist5k(tmp_path):
    """SoftHebb (1 epoch, 2,000 neurons) vs random, backprop and its spiking version (about 5 min)."""
    methods = _run_softhebb(tmp_path)["methods"]
    rate, spiking = methods["SoftHebb rate, 1 epoch"]["kwta"], methods["SoftHebb spiking, 1 epoch"]["kwta"]
    assert rate >= methods["frozen random"]["kwta"] + 0.02
    assert rate >= methods["backprop, 20 epochs"]["kwta"] - 0.02
    assert spiking >= rate - 0.03


def test_continual_benchmark_quick(tmp_path, capsys):
    assert _load("continual_mnist").main(["--quick", "--out", str(tmp_path)]) == 0
    streams = json.loads((tmp_path / "results.json").read_text())["streams"]
    domain = streams["split digits, domain-IL"]
    assert set(domain) == {"naive", "mas", "mas_hebbian", "ewc", "gated", "joint"}
    assert domain["mas"]["average_forgetting"] < domain["naive"]["average_forgetting"]
    assert domain["joint"]["average_accuracy"] > domain["naive"]["average_accuracy"]
    assert set(streams["SoftHebb (unsupervised), split digits"]) == {"naive", "mas", "gated"}
    for name in ("continual_split_digits__domain_IL.png", "softhebb_stream_gated.png"):
        assert (tmp_path / name).stat().st_size > 5000
    assert "of naive's" in capsys.readouterr().out


@pytest.mark.slow
def test_continual_benchmark_meets_the_issue_targets(tmp_path):
    """Task-IL split MNIST-5k: MAS forgets at most a third of naive's and stays within 5 points of joint (~5 min)."""
    assert _load("continual_mnist").main(["--out", str(tmp_path)]) == 0
    streams = json.loads((tmp_path / "results.json").read_text())["streams"]
    task = streams["split MNIST-5k, task-IL"]
    assert task["mas"]["average_forgetting"] <= task["naive"]["average_forgetting"] / 3
    assert task["mas"]["average_accuracy"] >= task["joint"]["average_accuracy"] - 0.05
    domain = streams["split MNIST-5k, domain-IL"]
    for method in ("mas", "mas_hebbian", "ewc", "gated"):
        assert domain[method]["average_forgetting"] <= domain["naive"]["average_forgetting"] / 3, method


def test_pc_benchmark_quick(tmp_path):
    assert _load("pc_mnist").main(["--quick", "--out", str(tmp_path), "--spiking-seeds", "0,1"]) == 0
    digits = json.loads((tmp_path / "results.json").read_text())["results"]["digits"]
    accs = [digits["pc"][t]["accuracy"] for t in ("1", "2", "4", "8")]
    assert accs[-1] > accs[0] and accs[-1] > 0.8  # more inference steps, closer to backprop
    assert digits["backprop"] > 0.8
    energy = digits["energy"]
    assert energy[-1] < energy[0]
    assert (tmp_path / "pc_energy_digits.png").stat().st_size > 5000
    spiking = digits["spiking"]  # 2 epochs of 128 steps in --quick: measured 0.825 (its weights' forward pass 0.839)
    assert spiking["accuracy"] > 0.7 and spiking["energy_end"] < 0.8 * spiking["energy_peak"]
    assert spiking["config"]["epochs"] == 2
    runs = spiking["runs"]  # one network per seed, the reported accuracy their mean
    assert [r["seed"] for r in runs] == [0, 1] and spiking["config"]["seed"] == 0
    assert spiking["accuracy"] == pytest.approx(np.mean([r["accuracy"] for r in runs]))
    assert all(r["accuracy"] > 0.7 for r in runs), runs
    with pytest.raises(SystemExit):
        _load("pc_mnist").main(["--quick", "--out", str(tmp_path), "--spiking-seeds", "0,0"])
    for plot in ("digits_spiking_energy.png", "digits_spiking_raster.png"):
        assert (tmp_path / plot).stat().st_size > 5000


def test_pc_spiking_signal_quick(tmp_path, capsys):
    """The first layer's one-step update direction is the unreliable one (digits, 16 hidden units: measured
    0.64 against the settled direction; the top layer's 0.96)."""
    assert _load("pc_spiking_signal").main(["--quick", "--steps", "256", "--out", str(tmp_path)]) == 0
    layers = json.loads((tmp_path / "results.json").read_text())["layers"]
    assert set(layers) == {"W1", "W2"}
    assert len(layers["W1"]["cosine_vs_settled"]) == 256
    assert layers["W1"]["snapshot_T_vs_settled"] < 0.9 < layers["W2"]["snapshot_T_vs_settled"] <= 1.0 + 1e-6
    # Against backprop (measured 0.68 and 0.90): the top layer's error is nearly the output error; a
    # sign or transpose slip in either direction would leave cosines near 0 or below it.
    assert 0.3 < layers["W1"]["snapshot_T_vs_backprop"] < layers["W2"]["snapshot_T_vs_backprop"]
    assert layers["W2"]["snapshot_T_vs_backprop"] > 0.8 and len(layers["W2"]["cosine_vs_backprop"]) == 256
    assert (tmp_path / "pc_spiking_signal.png").stat().st_size > 5000
    assert "snap T vs T+2" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # argparse names the unknown field
        _load("pc_spiking_signal").main(["--quick", "--config", '{"tau_valu": 2}', "--out", str(tmp_path)])
    assert "tau_valu" in capsys.readouterr().err


def test_pc_rate_emulation_quick(tmp_path, capsys):
    """The rate network with no departure is the rate network (same accuracy from the same seed); a
    leak moves the settled values towards 0 by the fraction it says."""
    mod = _load("pc_rate_emulation")
    assert mod.main(["--quick", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert len(results) == 3 and all(r["accuracy"] > 0.5 for r in results.values())
    from networks.pc import PCConfig, PCNetwork, build
    from neuro.datasets import load_digits
    cfg = PCConfig(hidden=(16,), steps=400, gamma=0.2, activation=mod.CLIP)
    x = torch.as_tensor(load_digits().x_test[:8], dtype=torch.float64)
    target = torch.eye(10, dtype=torch.float64)[:8]
    plain = PCNetwork(build(64, 10, cfg), cfg, dtype=torch.float64)
    same = mod.EmulatedPC(build(64, 10, cfg), cfg, mod.Departure(), dtype=torch.float64)
    leaky = mod.EmulatedPC(build(64, 10, cfg), cfg, mod.Departure(leak=0.04), dtype=torch.float64)
    settled = [net.infer(x, target, cfg.steps)[0][1] for net in (plain, same, leaky)]
    torch.testing.assert_close(settled[1], settled[0], rtol=0, atol=0)
    # Settled with the leak, a negative value v (no feedback from above: f' = 0) keeps the error -0.04 v.
    values, errors, _ = leaky.infer(x, target, cfg.steps)
    negative = values[1] < -0.05
    assert negative.sum() > 5
    torch.testing.assert_close(errors[0][negative], -0.04 * values[1][negative], rtol=1e-3, atol=1e-6)


def test_w1_stdp_benchmark_quick(tmp_path, capsys):
    assert _load("w1_stdp").main(["--quick", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "w1.json").read_text())
    rows = {r["simulator"]: r for r in results["rows"]}
    assert {"neuro event-driven", "neuro dense", "Norse loop + stdp_step_linear"} <= set(rows)
    # The engine paths run the same simulation (in float32 they may round apart: equality is tested in
    # float64 in test_event_driven.py); Norse's loop the same workload (its STDP traces differ slightly).
    dense = rows["neuro dense"]["spikes"]
    assert dense > 100
    for name in ("neuro event-driven", "neuro dense, compiled"):
        if name in rows:  # the compiled row needs a C++ compiler
            assert abs(rows[name]["spikes"] - dense) <= 0.02 * dense
    assert abs(rows["Norse loop + stdp_step_linear"]["spikes"] - rows["neuro dense"]["spikes"]) < 0.1 * rows["neuro dense"]["spikes"]
    assert all(r["time / neuro's best"] > 0 and r["ms_per_step"] > 0 for r in rows.values())
    assert results["versions"]["norse"] == "1.1.0"
    if not results["versions"]["spikingjelly"].startswith("not installed"):  # pip install -e .[peers]
        assert rows["SpikingJelly STDPLearner"]["spikes"] > 100
    assert "time / neuro's best" in capsys.readouterr().out


def test_w1_graph_rows_run_the_same_simulation(tmp_path):
    """The CUDA-graph row's chunked loop (on the CPU: eager chunks) simulates what the dense row does."""
    assert _load("w1_stdp").main(["--quick", "--rows", "dense,graphs", "--graph-steps", "20",
                                  "--out", str(tmp_path)]) == 0
    rows = {r["simulator"]: r for r in json.loads((tmp_path / "w1.json").read_text())["rows"]}
    assert rows["neuro CUDA graphs"]["spikes"] == rows["neuro dense"]["spikes"] > 100
    with pytest.raises(SystemExit, match="unknown row 'nope'"):
        _load("w1_stdp").main(["--quick", "--rows", "nope", "--out", str(tmp_path)])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # brian2 2.9 on pyparsing 3.3
def test_w2_ei_network_benchmark_quick(tmp_path, capsys):
    assert _load("w2_ei_network").main(["--quick", "--repeat", "2", "--export-brian2", "numpy",
                                        "--out", str(tmp_path)]) == 0
    rows = {r["simulator"]: r for r in json.loads((tmp_path / "w2.json").read_text())["rows"]}
    exported = rows["Brian2 numpy, exported by neuro (CPU)"]
    assert exported["identical_spike_trains"] and exported["spikes"] == exported["spikes_neuro_float64"] > 100
    event, dense, brian = rows["neuro, event-driven (cpu)"], rows["neuro, dense (cpu)"], rows["Brian2 numpy (CPU)"]
    assert dense["spikes"] > 100 and abs(event["spikes"] - dense["spikes"]) <= 0.05 * dense["spikes"]
    # Brian2 runs the same network (float64 against float32): the same activity.
    assert abs(brian["spikes"] - event["spikes"]) <= 0.05 * event["spikes"]
    assert brian["time / neuro event-driven"] > 0
    if "neuro, native C++ loop (cpu)" in rows:  # needs a C++ compiler
        native = rows["neuro, native C++ loop (cpu)"]
        assert native["spikes"] == event["spikes"] and native["compile_seconds"] >= 0
        assert len(native["all_seconds"]) == 2 and native["seconds"] == min(native["all_seconds"])
    assert "STDP on E synapses" in capsys.readouterr().out


def test_w2_sweep_plots_cost_against_spikes(tmp_path):
    module = _load("w2_ei_network")
    cfg = module.W2Config(n_exc=200, n_inh=50, p=0.05, duration=0.01)
    rows = module.sweep(cfg, dense_duration=0.005)
    events = sorted((r["spikes"], r["seconds"]) for r in rows if r["mode"] == "event")
    assert len(events) == 4 and events[0][0] < events[-1][0]  # the resting potential sets the activity
    fit = module.linear_fit(rows, "event")
    assert set(fit) == {"us_per_spike", "us_per_step_at_no_spikes", "r2"}
    native = sorted((r["spikes"], r["seconds"]) for r in rows if r["mode"] == "native")
    assert [n for n, _ in native] == [n for n, _ in events]  # the same simulation, level by level
    module.plot_sweep(rows, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 5000


def test_w3_softhebb_benchmark_quick(tmp_path, capsys):
    assert _load("w3_softhebb").main(["--quick", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "w3.json").read_text())["rows"]
    spiking = [r for r in rows if r["method"].startswith("SoftHebb spiking")]
    assert [r["method"].split(",")[0] for r in rows] == (["SoftHebb rate"] + ["SoftHebb spiking"] * len(spiking)
                                                         + ["backprop (peer)"])
    assert len(spiking) == (3 if compiler() else 2)  # event-driven, dense (and the native loop)
    assert spiking[1]["spikes_per_image"] > 0.5  # every way runs the same simulation, up to float32 rounding
    for r in spiking:
        assert abs(r["spikes_per_image"] - spiking[1]["spikes_per_image"]) <= 0.05 * spiking[1]["spikes_per_image"]
    assert all(r["images_per_second"] > 0 for r in rows)
    assert "images_per_second" in capsys.readouterr().out
