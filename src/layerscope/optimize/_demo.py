"""Demo sections for ``layerscope demo``: prototypes, entanglement, feature visualisation, isolation (and its
comparison with attribution maps), attacks and the shortcut-learning case study."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CIFAR_HOLDOUT = 8000


def demo_section(report: Any, *, cache_dir: Path, log: Callable[[str], None] = print) -> None:
    """Add the optimisation sections to ``report`` on the small CIFAR-10 CNN and EfficientNet-Lite0.

    The CIFAR-10 CNN is trained once (on the first 8,000 bundled CIFAR-10 test images) and cached under
    ``cache_dir``; so are the three small CNNs of the shortcut case study (quick mode, ~45 s to train once).
    Everything else is a few short batched optimisations (~45 s on a laptop CPU once cached).
    """
    import torch

    from ..data.corpus import cifar10_test
    from ..errors import ConfigError
    from ._models import cifar_cnn
    from .adversarial import success_curve
    from .compare import compare_maps
    from .featvis import visualize
    from .isolation import isolate
    from .prototypes import entanglement, prototypes
    from .shortcut import shortcut_study

    t0 = time.perf_counter()
    subject = cifar_cnn(cache_dir=cache_dir)
    images, labels, _ = cifar10_test()
    held_x, held_y = images[CIFAR_HOLDOUT:], labels[CIFAR_HOLDOUT:]
    log(f"optimize: cifar10-cnn ready ({time.perf_counter() - t0:.1f} s)")

    protos = prototypes(subject, list(range(10)), steps=96, seed=0)
    report.add(protos, title="Class prototypes (CIFAR-10 CNN, one batched run)")
    ent = entanglement(subject, protos, held_x, held_y)
    report.add(
        ent,
        title="Class entanglement vs confusion",
        note="Entanglement is read from the softmax of each class's prototype and from class-mean penultimate "
        "similarity on 2,000 held-out images; Spearman compares both with the empirical confusion pairs.",
    )
    log(f"optimize: prototypes + entanglement ({time.perf_counter() - t0:.1f} s)")

    fv = visualize(subject, "module:7", list(range(8)), steps=64, size=32, seed=0)
    report.add(fv, title="Feature visualisation: last conv channels of the CIFAR-10 CNN")

    x = torch.as_tensor(held_x[:1])
    report.add(isolate(subject, x, top_k=2, areas=(0.1, 0.3), steps=120), title="Feature isolation")
    try:
        cmp = compare_maps(subject, held_x[:3], area=0.1, steps=120)
    except (
        ConfigError
    ) as e:  # layerscope.attribution could not be imported: the rest of the section still runs
        log(f"optimize: isolation vs attribution skipped ({e})")
    else:
        report.add(
            cmp,
            title="Feature isolation vs Integrated Gradients and occlusion",
            note="Three held-out images, target = the predicted class. Every map hides pixels the same way "
            "(blurred), IG is integrated from the blurred image (32 Gauss–Legendre steps) and occlusion "
            "replaces 4×4 patches by it. Agreement is measured at the mask's area (10 % of the pixels).",
        )

    curve = success_curve(subject, held_x[:128], held_y[:128], [1 / 255, 2 / 255, 4 / 255, 8 / 255], steps=10)
    report.add(curve, title="PGD (L∞) success rate vs ε on 128 held-out images")
    log(f"optimize: feature vis, isolation, attacks ({time.perf_counter() - t0:.1f} s)")

    study = shortcut_study(quick=True, seed=0, cache_dir=cache_dir, log=log)
    report.add(
        study,
        title="Case study: is it the airplane or the frame? (shortcut learning, quick mode)",
        note="A magenta 3-px frame on 95 % of the training airplanes (5 % of the others) of an 8,000/2,000 "
        "seeded split of the bundled CIFAR-10 images. The diversified model sees the same frame on half "
        "of every class. Quick mode: 16-channel CNNs, 5 epochs, 16 masks per model; the numbers over three "
        "seeds in full mode are in docs/optimize.md.",
    )
    log(f"optimize: shortcut study ({time.perf_counter() - t0:.1f} s)")

    from ..models import load

    effnet = load("effnet-lite0")
    fv2 = visualize(effnet, "blocks.4.out", [0, 1, 2, 3], steps=32, size=96, seed=0)
    report.add(
        fv2,
        title="Feature visualisation: EfficientNet-Lite0 blocks.4.out (short run)",
        note="32 steps only (demo budget); run `layerscope visualize effnet-lite0 --site blocks.10.out "
        "--units 0-7` for 256-step images.",
    )
    log(f"optimize: done ({time.perf_counter() - t0:.1f} s)")
