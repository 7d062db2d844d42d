"""Sparse-training policies: one object per layer deciding the operands of FWD, BWI and BWW."""

from ref.policies.base import BackwardPlan, ForwardPlan, IterationInfo, LayerSpec, Policy
from ref.policies.dense import DensePolicy
from ref.policies.registry import ALGOS, DEFAULT_SPARSITY, EXACT_ALGOS, build_policies, resolve_sparsity
from ref.policies.relu_mask import ReluMaskPolicy
from ref.policies.resprop import ReSpropPolicy
from ref.policies.stochastic_prune import StochasticPrunePolicy, stochastic_prune
from ref.policies.swat import SwatPolicy, erk_sparsities, topk_mask
from ref.policies.zero_skip import ZeroSkipPolicy

__all__ = [
    "ALGOS", "DEFAULT_SPARSITY", "EXACT_ALGOS", "BackwardPlan", "DensePolicy", "ForwardPlan",
    "IterationInfo", "LayerSpec", "Policy", "ReSpropPolicy", "ReluMaskPolicy", "StochasticPrunePolicy",
    "SwatPolicy", "ZeroSkipPolicy", "build_policies", "erk_sparsities", "resolve_sparsity",
    "stochastic_prune", "topk_mask",
]  # fmt: skip
