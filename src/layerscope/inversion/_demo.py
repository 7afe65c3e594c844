"""Demo section: a short prompt inversion on smollm2 (" girl" vs " boy"), cached under ``cache_dir``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Demo sizes: 2 targets × 6 restarts × 15 PEZ steps × 3 prompt tokens (~15-25 s on a 2-core CPU).
TARGETS = [" girl", " boy"]
RESTARTS, STEPS, LENGTH, SEED = 6, 15, 3, 0


def demo_section(report: Any, *, cache_dir: Path, log: Callable[[str], Any] = print) -> None:
    """Add the prompt-inversion section (token maps for " girl" vs " boy") to ``report``."""
    from ..models import load
    from .invert import invert
    from .result import InversionResult

    path = Path(cache_dir) / "girl-boy"
    result: InversionResult | None = None
    if (path / "result.json").is_file():
        try:
            result = InversionResult.load(path)
        except Exception:  # a stale or partial cache is recomputed
            result = None
        if result is not None and (result.targets, result.restarts, result.steps) != (
            TARGETS,
            RESTARTS,
            STEPS,
        ):
            result = None
    if result is None:
        import torch

        t0 = time.perf_counter()
        subject = load("smollm2")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small matmuls: one thread is faster on a busy 2-core machine
        try:
            result = invert(
                subject,
                TARGETS,
                restarts=RESTARTS,
                steps=STEPS,
                length=LENGTH,
                seed=SEED,
            )
        finally:
            torch.set_num_threads(threads)
        result.save(path)
        log(f"inversion: {time.perf_counter() - t0:.1f}s")
    report.add(
        result,
        title="Prompt inversion: what makes smollm2 say “ girl” / “ boy”?",
        note=(
            f"Demo size: {result.restarts} restarts × {result.steps} PEZ steps of {result.length} prompt "
            "tokens per target (real runs use ~32 restarts × 200 steps: layerscope invert smollm2 "
            "--target ' girl' --target ' boy')."
        ),
    )
