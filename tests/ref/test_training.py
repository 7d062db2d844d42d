import math

import pytest

from ref.layer_ops import PASSES
from ref.training import train

LAYERS = ("conv1", "conv2", "conv3", "fc")


def small(algo: str, **kw) -> dict:
    return train(algo, epochs=1, seed=5, train_subset=96, plots=False, **kw)


@pytest.mark.parametrize("algo", ["dense", "stochastic_prune", "resprop", "swat"])
def test_metrics_keys_and_ranges(algo: str) -> None:
    m = small(algo, variant="bn_relu")
    for key in ("algo", "seed", "sparsity", "variant", "epochs", "test_accuracy", "train_time_s", "layers", "versions"):
        assert key in m
    assert m["algo"] == algo and m["seed"] == 5 and m["variant"] == "bn_relu" and m["epochs"] == 1
    assert 0.0 <= m["test_accuracy"] <= 1.0
    assert set(m["versions"]) >= {"python", "torch", "numpy", "sklearn"}
    assert set(m["layers"]) == set(LAYERS)
    for lay in LAYERS:
        passes = set(m["layers"][lay])
        # conv1's input is the image: its BWI (dX) is never needed and never computed.
        assert passes == (set(PASSES) - {"bwi"} if lay == "conv1" else set(PASSES))
        for p in passes:
            s = m["layers"][lay][p]
            # ReSprop adds its one-sample pre-terms (dense/N per pass) on top of the sparse part, so
            # with a nearly dense S (warm-up) it issues up to (1 + 1/N) x dense MACs.
            upper = 1.0 + 1.0 / 32 if algo == "resprop" and p != "fwd" else 1.0
            assert 0.0 <= s["effectual_fraction"] <= s["issued_fraction"] <= upper
            for k in ("operand_density_a", "operand_density_b", "mask_density"):
                assert 0.0 <= s[k] <= 1.0
    assert len(m["history"]) == 1 and m["history"][0]["epoch"] == 0


def test_same_seed_gives_identical_metrics() -> None:
    a, b = small("stochastic_prune"), small("stochastic_prune")
    for m in (a, b):
        m.pop("train_time_s")
    assert a == b
    c = train("stochastic_prune", epochs=1, seed=6, train_subset=96, plots=False)
    assert c["layers"] != a["layers"]


def test_swat_achieves_its_weight_sparsity() -> None:
    m = small("swat", sparsity=0.8)
    # W of conv2, conv3 and fc is Top-K with keep 0.2 (ties only add entries): density ~ 0.2.
    for lay in ("conv2", "conv3", "fc"):
        assert m["layers"][lay]["fwd"]["operand_density_b"] == pytest.approx(0.2, abs=0.01)
    assert m["layers"]["conv1"]["fwd"]["operand_density_b"] == 1.0  # first layer dense


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="algo"):
        train("magic", epochs=1)
    with pytest.raises(ValueError, match="sparsity"):
        train("swat", sparsity=1.0, epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        train("dense", epochs=-1)
    with pytest.raises(ValueError, match="variant"):
        train("dense", epochs=1, variant="gelu")
    with pytest.raises(ValueError, match="out_dir"):
        train("dense", epochs=1, train_subset=64, trace_iters=[0])


def test_zero_epochs_evaluates_initial_model() -> None:
    m = train("dense", epochs=0, seed=1, plots=False)
    assert m["history"] == [] and 0.0 <= m["test_accuracy"] <= 1.0 and not math.isnan(m["test_accuracy"])
