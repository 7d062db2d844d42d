"""Golden-model tests: one intra-op thread per process. The tensors are tiny, and with pytest-xdist
workers (one per core) extra OpenMP threads only oversubscribe the cores."""

import torch

torch.set_num_threads(1)
