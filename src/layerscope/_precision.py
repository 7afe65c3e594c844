"""Numeric precision choices shared by the probes (bfloat16 matmuls) and the optimisation loop (autocast).

``"auto"`` means bfloat16 where the hardware runs it natively and fast (CPUs with AMX / AVX512-BF16, GPUs
with bfloat16 support) and float32 elsewhere: emulated bfloat16 is several times *slower* than float32.
"""

from __future__ import annotations

import functools
import time

import torch

from .errors import ConfigError

PRECISIONS = ("auto", "float32", "bfloat16")


@functools.lru_cache(maxsize=1)
def bf16_matmul_is_fast() -> bool:
    """Whether bfloat16 batched matmuls run at least 2× faster than float32 on this CPU (AMX / AVX512-BF16).

    Measured once per process on one thread (a few milliseconds): on CPUs without bfloat16 units torch
    emulates it, which is several times *slower* than float32, so the lower precision is only used where it
    pays.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a32, b32 = torch.randn(4, 256, 384), torch.randn(4, 384, 256)
        a16, b16 = a32.bfloat16(), b32.bfloat16()

        def best(a: torch.Tensor, b: torch.Tensor) -> float:
            times = []
            for _ in range(4):
                t = time.perf_counter()
                torch.bmm(a, b)
                times.append(time.perf_counter() - t)
            return min(times[1:])

        return best(a16, b16) * 2 <= best(a32, b32)
    finally:
        torch.set_num_threads(before)


def check_precision(precision: object) -> str:
    """``precision`` itself if it is one of :data:`PRECISIONS`, else a ``ConfigError`` naming them."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be 'auto', 'float32' or 'bfloat16', got {precision!r}")
    return str(precision)


def resolve_precision(precision: str) -> torch.dtype:
    """The CPU matmul dtype for ``precision``: ``"auto"`` is bfloat16 where :func:`bf16_matmul_is_fast`."""
    p = check_precision(precision)
    if p == "float32":
        return torch.float32
    if p == "bfloat16":
        return torch.bfloat16
    return torch.bfloat16 if bf16_matmul_is_fast() else torch.float32


def autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for a model on ``device`` (None: run in float32, no autocast).

    ``"auto"`` picks bfloat16 on CUDA devices with native support (compute capability ≥ 8, judged on
    ``device`` itself) and on CPUs where :func:`bf16_matmul_is_fast`, float32 elsewhere; ``"bfloat16"``
    forces it.
    """
    p = check_precision(precision)
    if p == "float32":
        return None
    if p == "bfloat16":
        return torch.bfloat16
    dev = torch.device(device)
    if dev.type == "cuda":  # native bfloat16 from compute capability 8 (Ampere); older GPUs emulate it
        major, _ = torch.cuda.get_device_capability(dev)
        return torch.bfloat16 if major >= 8 else None
    if dev.type == "cpu":
        return torch.bfloat16 if bf16_matmul_is_fast() else None
    return None
