"""README.md's quick start runs as written (at a smaller image size, so it stays fast on CPU)."""

import os

import torch

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def test_quick_start_runs():
    text = open(README, encoding="utf-8").read()
    block = text[text.index("## Quick start"):]
    block = block[block.index("```python") + len("```python"):]
    code = block[: block.index("```")]
    assert "size=256" in code  # the one substitution below must still apply
    ns: dict = {}
    exec(compile(code.replace("size=256", "size=64"), "README.md quick start", "exec"), ns)
    assert ns["family"].shape == (6, 1, 64, 64) and ns["jsw"].shape == (6,)
    assert bool((ns["jsw"][1:] > ns["jsw"][:-1]).all())  # the family's JSW rises as asked
    assert isinstance(ns["families"], torch.utils.data.IterableDataset)
