"""perfci's CPU stand-in for SGLang's kernel package (`sgl_kernel`), in plain torch.

PyPI ships that package for CUDA only, and importing it on a machine without a GPU fails; SGLang's CPU engine
imports it nonetheless. This stand-in implements exactly the ops SGLang's CPU path calls on a CPU without AMX
(the rest of that path uses torch itself). It registers no `torch.ops.sgl_kernel` ops, so SGLang never selects
its AMX backend, whose ops it does not have. Any other name imports (SGLang imports some ops it only calls in
features such as speculative decoding) but raises StandInOpMissing, naming the op, when called.

perfci uses it only when no CPU build of the kernel package is importable, and says so in the run record
(`build.kernels`)."""

from __future__ import annotations

import torch

__version__ = "0.0.0+perfci.cpu.standin"
STAND_IN = True  # how perfci's probe tells this package from a real build
IMPLEMENTED = ("assign_req_to_token_pool_cpu",)


class StandInOpMissing(NotImplementedError):
    pass


def assign_req_to_token_pool_cpu(req_pool_indices: torch.Tensor, req_to_token: torch.Tensor,
                                 start_offset: torch.Tensor, end_offset: torch.Tensor, out_cache_loc: torch.Tensor,
                                 pool_len: int) -> None:  # fmt: skip
    """Request i's token slots start_offset[i]:end_offset[i] get the next end-start entries of out_cache_loc,
    taken in request order (what the CUDA kernel and SGLang's Triton one do)."""
    del pool_len  # the row length of req_to_token; a tensor row knows its own
    taken = 0
    for row, start, end in zip(req_pool_indices.tolist(), start_offset.tolist(), end_offset.tolist(), strict=True):
        n = end - start
        req_to_token[row, start:end] = out_cache_loc[taken:taken + n].to(req_to_token.dtype)
        taken += n


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)

    def missing(*args, **kwargs):
        raise StandInOpMissing(
            f"sgl_kernel.{name} was called, but perfci's CPU stand-in for sgl_kernel implements only "
            f"{', '.join(IMPLEMENTED)}: install a CPU build of SGLang's kernel package for this configuration"
        )

    missing.__name__ = name
    return missing
