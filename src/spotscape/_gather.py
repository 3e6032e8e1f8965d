"""Row gathers whose gradient is the same bit for bit from run to run."""
from __future__ import annotations

import torch


def gather_rows(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``t[idx]`` for an index tensor of any shape, with a backward that adds repeated rows in a fixed
    order. On a CPU that is ``index_select`` (advanced indexing's backward adds them in parallel
    there, in a varying order: two fits with one seed differed); on a GPU advanced indexing, whose
    CUDA backward sorts the indices (``index_select``'s uses atomic adds there)."""
    if t.device.type == "cuda":
        return t[idx]
    return t.index_select(0, idx.reshape(-1)).view(*idx.shape, *t.shape[1:])
