"""The torch-then-Lava example and the `neuro export` command."""
import importlib.util
from pathlib import Path

import nir
import numpy as np
import pytest

pytest.importorskip("lava")
from export.nir import NIRExportWarning, PlasticityNotExportedWarning  # noqa: E402
from neuro.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# brian2 2.9 calls pyparsing's camelCase API, which pyparsing 3.3 deprecates (noise, not ours).
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated.*:DeprecationWarning")


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("torch_then_lava")
    results = load_example("torch_then_lava").main(out)
    return out, results


def test_example_lava_continues_the_torch_run_exactly(example_out):
    out, results = example_out
    assert results["spike_mismatches"] == 0
    assert results["max_weight_difference"] < 1e-9
    assert results["brian2_spike_mismatches"] == 0 and results["brian2_max_weight_difference"] < 1e-9
    png = (out / "weights_torch_then_lava.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000


def test_neuro_export_to_lava_reports_agreement(example_out, capsys):
    out, _ = example_out
    assert main(["export", "--to", "lava", str(out / "model.h5"), "--steps", "300", "--input", "inp=0.6"]) == 0
    text = capsys.readouterr().out
    assert "agrees with the torch engine" in text and "out.spikes" in text


def test_neuro_export_to_nir_writes_a_graph(example_out, tmp_path, capsys):
    out, _ = example_out
    target = tmp_path / "graph.nir"
    with pytest.warns(NIRExportWarning, match="encoder is not exported"), pytest.warns(
        PlasticityNotExportedWarning, match="'ff'"
    ):
        assert main(["export", "--to", "nir", str(out / "model.h5"), "-o", str(target)]) == 0
    graph = nir.read(str(target))
    linear = [n for n in graph.nodes.values() if isinstance(n, nir.Linear)]
    assert {tuple(np.shape(n.weight)) for n in linear} == {(8, 20), (8, 8)}
    assert "plasticity rules stay in" in capsys.readouterr().out


def test_neuro_export_bad_input_fails_clearly(example_out, capsys):
    out, _ = example_out
    assert main(["export", "--to", "lava", str(out / "model.h5"), "--input", "nope=1"]) == 1
    assert "--input 'nope=1'" in capsys.readouterr().err


def test_neuro_export_problems_are_one_line_errors_and_nir_options_are_offered(tmp_path, capsys):
    import torch

    from neuro import Network, Simulator
    from neuro.io import save

    net = Network(dt=1e-3)
    net.input("x", 3)
    net.population("a", 2)
    net.connect("x", "a", np.arange(12, dtype=float).reshape(2, 2, 3) / 10)  # per replica
    save(tmp_path / "m.h5", Simulator(net, replicas=2))
    target = tmp_path / "g.nir"
    assert main(["export", "--to", "nir", str(tmp_path / "m.h5"), "-o", str(target)]) == 1
    assert "--replica" in capsys.readouterr().err and not target.exists()
    assert main(["export", "--to", "nir", str(tmp_path / "m.h5"), "-o", str(target), "--replica", "1"]) == 0
    np.testing.assert_allclose(nir.read(str(target)).nodes["x_to_a"].weight, np.arange(6, 12).reshape(2, 3) / 10, rtol=1e-6)
    capsys.readouterr()
    single = Network(dt=1e-3)
    single.input("x", 3)
    single.population("a", 2)
    single.connect("x", "a", 0.5)
    save(tmp_path / "s.h5", Simulator(single, dtype=torch.float64))
    for args, problem in [(["--steps", "0"], "--steps must be at least 1, got 0"),
                          (["--input", f"x={tmp_path / 'missing.npy'}"], "cannot read"),
                          (["--input", "x=abc"], "neither a number nor a .npy file")]:
        assert main(["export", "--to", "lava", str(tmp_path / "s.h5")] + args) == 1
        err = capsys.readouterr().err
        assert problem in err and "Traceback" not in err


def test_neuro_export_to_brian2_reports_agreement(example_out, capsys):
    pytest.importorskip("brian2")
    out, _ = example_out
    assert main(["export", "--to", "brian2", str(out / "model.h5"), "--steps", "300", "--input", "inp=0.6"]) == 0
    text = capsys.readouterr().out
    assert "Brian2" in text and "agrees with the torch engine" in text and "out.spikes" in text
