import itertools
import json
from pathlib import Path

import pytest
import torch

from ref.lfsr import GaloisLFSR
from ref.numerics import tau_constant
from ref.policies import stochastic_prune
from ref.traces import FORMAT_VERSION, load_trace
from ref.training import train


@pytest.fixture(scope="module")
def sp_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sp")
    train("stochastic_prune", epochs=1, seed=2, train_subset=96, trace_iters=[0, 2], out_dir=out, plots=False)
    return out / "trace"


def test_round_trip_and_lfsr_replay(sp_trace: Path) -> None:
    tr = load_trace(sp_trace)
    assert tr.algo == "stochastic_prune" and tr.seed == 2 and tr.manifest["format_version"] == FORMAT_VERSION
    assert [r.iteration for r in tr.records] == [0, 2]
    for rec in tr.records:
        layers = rec.layers
        assert list(layers) == ["conv1", "conv2", "conv3", "fc"]
        # Layers draw in backward order, one shared LFSR: fc, conv3, conv2, conv1.
        order = ["fc", "conv3", "conv2", "conv1"]
        for a, b in itertools.pairwise(order):
            assert layers[a].scalars["lfsr_state_after"] == layers[b].scalars["lfsr_state_before"]
        for lay in layers.values():
            t, s = lay.tensors, lay.scalars
            pol = lay.policy
            dy = t["dy"]
            tau = tau_constant(pol["sparsity"], pol["tau_rule"]) * float(dy.double().abs().mean())
            assert s["tau"] == tau
            lf = GaloisLFSR(pol["lfsr_width"], pol["lfsr_taps"], s["lfsr_state_before"])
            assert torch.equal(stochastic_prune(dy, tau, lf.uniforms(dy.shape)), t["dy_pruned"])
            assert lf.state == s["lfsr_state_after"]
        # Forward replay: ReLU(conv1(x) + b) is conv2's recorded input.
        c1, c2 = layers["conv1"], layers["conv2"]
        y = torch.nn.functional.conv2d(c1.tensors["x"], c1.tensors["w"], None, c1.stride, c1.padding)
        assert torch.equal(torch.relu(y + c1.tensors["b"].view(1, -1, 1, 1)), c2.tensors["x"])


def test_swat_and_resprop_traces_hold_masks_and_decomposition(tmp_path: Path) -> None:
    train("swat", epochs=1, seed=3, train_subset=96, trace_iters=[1], out_dir=tmp_path / "sw", plots=False)
    rec = load_trace(tmp_path / "sw" / "trace").records[0]
    c2 = rec.layers["conv2"]
    assert torch.equal(c2.tensors["swat_mask_w"], c2.tensors["w"].abs() >= c2.scalars["thr_w"])
    assert "swat_mask_w" not in rec.layers["conv1"].tensors  # first layer dense
    train("resprop", epochs=1, seed=3, train_subset=128, trace_iters=[2], out_dir=tmp_path / "rs", plots=False)
    rec = load_trace(tmp_path / "rs" / "trace").records[0]
    for lay in ("conv1", "conv2", "conv3"):
        t = rec.layers[lay].tensors
        d = t["dy"] - t["P"][None]
        thr = rec.layers[lay].scalars["threshold_before"]
        assert torch.equal(t["S"], torch.where(d.abs() > thr, d, torch.zeros(())))
    assert "S" not in rec.layers["fc"].tensors  # linear layer dense (official)


def test_version_and_consistency_checks(sp_trace: Path, tmp_path: Path) -> None:
    man = json.loads((sp_trace / "manifest.json").read_text())
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in sp_trace.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "manifest.json").write_text(json.dumps({**man, "format_version": 2}))
    with pytest.raises(ValueError, match="format_version must be 1, got 2"):
        load_trace(bad)
    man["records"][0]["layers"]["conv1"]["tensors"]["x"]["shape"] = [1, 2, 3]
    (bad / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ValueError, match=r"conv1\.x"):
        load_trace(bad)
    with pytest.raises(FileNotFoundError):
        load_trace(tmp_path / "nowhere")
