"""Build one policy per layer of a model from an algorithm name and a sparsity.

Layer exclusions follow ALGORITHMS.md: ``swat`` keeps the first layer dense by default (uniform
allocation; ERK includes it, as the official ERK configs do) and sparsifies the last; ``resprop``
sparsifies every conv including the first and keeps linear layers dense (official);
``stochastic_prune`` prunes every conv and linear layer (third-party code).
"""

from __future__ import annotations

import torch

from ref.lfsr import GaloisLFSR
from ref.policies.base import LayerSpec, Policy
from ref.policies.dense import DensePolicy
from ref.policies.relu_mask import ReluMaskPolicy
from ref.policies.resprop import ReSpropPolicy
from ref.policies.stochastic_prune import StochasticPrunePolicy
from ref.policies.swat import SwatPolicy, erk_sparsities
from ref.policies.zero_skip import ZeroSkipPolicy

ALGOS: tuple[str, ...] = ("dense", "relu_mask", "zero_skip", "stochastic_prune", "resprop", "swat")
EXACT_ALGOS: frozenset[str] = frozenset({"dense", "relu_mask", "zero_skip"})
DEFAULT_SPARSITY: dict[str, float] = {
    "dense": 0.0, "relu_mask": 0.0, "zero_skip": 0.0, "stochastic_prune": 0.9, "resprop": 0.9, "swat": 0.9,
}  # fmt: skip


def resolve_sparsity(algo: str, sparsity: float | None) -> float:
    """Validate ``algo`` and ``sparsity``; None selects the algorithm's default."""
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {ALGOS}, got {algo!r}")
    if sparsity is None:
        return DEFAULT_SPARSITY[algo]
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if algo in EXACT_ALGOS and sparsity != 0.0:
        raise ValueError(f"sparsity does not apply to the exact algorithm {algo!r} (allowed: 0 or omitted)")
    return float(sparsity)


def lfsr_seed(seed: int, width: int) -> int:
    """A nonzero LFSR seed derived from the run seed: (seed mod (2^w - 1)) + 1."""
    return seed % ((1 << width) - 1) + 1


def build_policies(
    algo: str,
    specs: list[LayerSpec],
    sparsity: float | None = None,
    seed: int = 0,
    options: dict[str, object] | None = None,
) -> list[Policy]:
    """One policy per layer spec. ``options`` are algorithm parameters:

    - stochastic_prune: ``rng`` ("lfsr" | "torch"), ``lfsr_width`` (16), ``lfsr_taps`` (None =
      default maximal taps), ``tau_rule``, ``bias_grad``.
    - resprop: ``threshold_mode``, ``initial_threshold``, ``nz_margin``, ``warmup``,
      ``dense_first_last``, ``sample_index``, ``include_linear`` (False).
    - swat: ``topk_period``, ``structure``, ``allocation`` ("uniform" | "erk"),
      ``dense_first_layer`` (None = True for uniform, False for erk), ``dense_last_layer`` (False),
      ``warmup_epochs``, ``linear_exact``, ``count_rule`` ("official" | "rounded"),
      ``channel_recompute`` ("always" | "periodic").
    """
    s = resolve_sparsity(algo, sparsity)
    opts = dict(options or {})
    if algo == "dense":
        return [DensePolicy(sp) for sp in specs]
    if algo == "relu_mask":
        return [ReluMaskPolicy(sp) for sp in specs]
    if algo == "zero_skip":
        return [ZeroSkipPolicy(sp) for sp in specs]
    if algo == "stochastic_prune":
        rng = opts.pop("rng", "lfsr")
        kw: dict[str, object] = {}
        if rng == "lfsr":
            width = int(opts.pop("lfsr_width", 16))
            kw["lfsr"] = GaloisLFSR(width, opts.pop("lfsr_taps", None), lfsr_seed(seed, width))
        elif rng == "torch":
            kw["generator"] = torch.Generator().manual_seed(seed)
        else:
            raise ValueError(f"rng must be one of ('lfsr', 'torch'), got {rng!r}")
        return [StochasticPrunePolicy(sp, sparsity=s, **kw, **opts) for sp in specs]
    if algo == "resprop":
        include_linear = bool(opts.pop("include_linear", False))
        n_res = sum(1 for sp in specs if sp.kind == "conv" or include_linear)
        out: list[Policy] = []
        for sp in specs:
            if sp.kind == "conv" or include_linear:
                pol = ReSpropPolicy(sp, reuse_sparsity=s, seed=seed * 1000 + sp.index, n_layers=n_res, **opts)
                out.append(pol)
            else:
                out.append(DensePolicy(sp))
        return out
    # swat
    allocation = opts.pop("allocation", "uniform")
    if allocation not in ("uniform", "erk"):
        raise ValueError(f"allocation must be one of ('uniform', 'erk'), got {allocation!r}")
    dense_first = opts.pop("dense_first_layer", None)
    dense_first = (allocation == "uniform") if dense_first is None else bool(dense_first)
    dense_last = bool(opts.pop("dense_last_layer", False))
    dense_idx = {sp.index for sp in specs if (dense_first and sp.is_first) or (dense_last and sp.is_last)}
    if allocation == "erk":
        per_layer = erk_sparsities([sp.weight_shape for sp in specs], s, dense_idx)
    else:
        per_layer = [0.0 if sp.index in dense_idx else s for sp in specs]
    structure = opts.pop("structure", "unstructured")
    out = []
    for sp, sl in zip(specs, per_layer, strict=True):
        if sp.index in dense_idx:
            out.append(DensePolicy(sp))
        else:
            st = structure if sp.kind == "conv" else "unstructured"
            out.append(SwatPolicy(sp, sparsity=sl, structure=st, **opts))
    return out
