"""Design study of the compute core: candidate cycle models on whole-GEMM zero patterns
(docs/design_study.md; run by benchmarks/design_study.py)."""
