"""``examples/replay_own_model.py``: a user's own PyTorch model replayed on the RTL."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "replay_own_model.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("replay_own_model", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_replays_its_model_bit_exact(tmp_path):
    example = _load_example()
    assert example.main(["--out", str(tmp_path), "--preset", "tiny", "--batch", "1", "--max-tiles", "2"]) == 0
    rows = json.loads((tmp_path / "compare" / "compare.json").read_text())
    # Two convs and a linear layer: every pass but the first layer's BWI.
    assert [(r["layer"], r["pass"]) for r in rows] == [
        ("layer0_conv2d", "fwd"), ("layer0_conv2d", "bww"),
        *((name, p) for name in ("layer1_conv2d", "layer2_linear") for p in ("fwd", "bwi", "bww"))]
    assert all(r["match"] and r["counters_match"] and r["policy"] == "zero_skip" for r in rows)


def test_example_rejects_a_layer_it_cannot_lower(tmp_path):
    example = _load_example()
    from torch import nn

    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, dilation=1, groups=1, stride=(1, 2)), nn.Flatten(),
                          nn.Linear(4 * 12 * 6, 10))
    inputs, labels = example.make_batch(1, 0)
    try:
        example.capture_trace(model, inputs, labels, tmp_path, 0)
    except ValueError as exc:
        assert "layer 0: only square kernels, equal stride/padding" in str(exc)
    else:
        raise AssertionError("a conv with stride (1, 2) was accepted")
    assert not (tmp_path / "trace").exists()
