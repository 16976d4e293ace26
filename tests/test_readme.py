"""The README's Python examples run as written."""
import re
import warnings
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples write model files
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. NIR's "no plasticity" notice, asserted elsewhere
        exec(compile(BLOCKS[index], f"README.md python block {index + 1}", "exec"), {})


def test_readme_has_examples():
    assert len(BLOCKS) >= 2
