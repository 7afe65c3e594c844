"""Channel visualisation speed on EfficientNet-Lite0: layerscope.optimize vs torch-lucent, one run.

Same task for both: 8 channels of ``_blocks.10`` (``blocks.10.out``) in one batch, Fourier parametrisation
with colour decorrelation, 128 px images, Lucid's standard transforms, Adam lr 0.05, input normalised with
the model's mean/std (0.5/0.5) and upsampled to 224 px. Differences that are the point of the comparison:
layerscope folds pad/jitter/scale/rotate/upsample into one ``grid_sample`` per step and stops the forward
pass after block 10; lucent applies the transforms one by one (kornia for rotation), upsamples separately,
hooks every module and runs the whole network.

lucent needs torchvision, which never enters .venv: run this in the bench env (see setup_bench_env.sh).
On CPU-only torch the PyPI torchvision wheel cannot load its C ops, and lucent only uses
``torchvision.transforms.Normalize``; this script therefore provides a tiny stand-in module for it
(identical maths) when torchvision is absent, and maps kornia >= 0.7 names back for lucent 0.1.8.

    HF_HUB_OFFLINE=1 bench/.venv-bench/bin/python bench/optimize_featvis.py --steps 256 --rounds 3
    HF_HUB_OFFLINE=1 bench/.venv-bench/bin/python bench/optimize_featvis.py --steps 20 --rounds 1   # quick
"""

from __future__ import annotations

import argparse
import importlib.machinery
import statistics
import sys
import time
import types

import torch


def _torchvision_stub() -> None:
    try:
        import torchvision  # noqa: F401

        return
    except Exception:
        for k in [k for k in sys.modules if k.startswith("torchvision")]:
            del sys.modules[k]

    class Normalize(torch.nn.Module):
        def __init__(self, mean, std):  # type: ignore[no-untyped-def]
            super().__init__()
            self.mean = torch.tensor(mean).view(-1, 1, 1)
            self.std = torch.tensor(std).view(-1, 1, 1)

        def forward(self, x):  # type: ignore[no-untyped-def]
            return (x - self.mean.to(x)) / self.std.to(x)

    tv = types.ModuleType("torchvision")
    tr = types.ModuleType("torchvision.transforms")
    tr.Normalize = Normalize  # type: ignore[attr-defined]
    tv.transforms = tr  # type: ignore[attr-defined]
    tv.__spec__ = importlib.machinery.ModuleSpec("torchvision", None)
    tr.__spec__ = importlib.machinery.ModuleSpec("torchvision.transforms", None)
    sys.modules["torchvision"] = tv
    sys.modules["torchvision.transforms"] = tr


def _kornia_compat() -> None:
    import kornia

    geo = kornia.geometry.transform
    for name in ("get_rotation_matrix2d", "warp_affine"):
        if not hasattr(kornia, name):
            setattr(kornia, name, getattr(geo, name))


def run_lucent(model: torch.nn.Module, units: list[int], steps: int) -> float:
    from lucent.optvis import objectives, param, render, transform

    obj = sum(objectives.channel("_blocks_10", u, batch=i) for i, u in enumerate(units))
    norm = lambda x: (x - 0.5) / 0.5  # noqa: E731 - the model's ImageSpec normalisation
    torch.manual_seed(0)
    t0 = time.perf_counter()
    render.render_vis(
        model,
        obj,
        param_f=lambda: param.image(128, batch=len(units), fft=True, decorrelate=True),
        transforms=[*transform.standard_transforms, norm],
        thresholds=(steps,),
        preprocess=False,
        progress=False,
        show_image=False,
        fixed_image_size=224,
    )
    return steps / (time.perf_counter() - t0)


def run_layerscope(subject, units: list[int], steps: int, precision: str) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    from layerscope.optimize import visualize

    t0 = time.perf_counter()
    r = visualize(
        subject,
        "blocks.10.out",
        units,
        steps=steps,
        size=128,
        param="fourier",
        transforms="standard",
        precision=precision,
    )
    wall = time.perf_counter() - t0
    return steps / wall, float(r.scores.mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument(
        "--precision",
        default="float32",
        help="layerscope's model precision: float32 (lucent's, the like-for-like default) or auto (our default)",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import layerscope

    subject = layerscope.load("effnet-lite0")  # before the stub: transformers probes torchvision on import
    _torchvision_stub()
    _kornia_compat()
    model = subject.model.eval()
    units = list(range(8))
    ours, theirs, score = [], [], 0.0
    for r in range(args.rounds):
        order = ("ls", "lucent") if r % 2 == 0 else ("lucent", "ls")
        for who in order:
            if who == "ls":
                sps, score = run_layerscope(subject, units, args.steps, args.precision)
                ours.append(sps)
            else:
                theirs.append(run_lucent(model, units, args.steps))
        print(f"round {r}: layerscope {ours[-1]:.2f} steps/s, lucent {theirs[-1]:.2f} steps/s", flush=True)
    a, b = statistics.median(ours), statistics.median(theirs)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.steps} steps, batch 8, 128 px, "
        f"layerscope precision {args.precision} (lucent float32)"
    )
    print(f"median steps/s  layerscope {a:.2f}   lucent {b:.2f}   ratio {a / b:.2f}x  (target >= 2x)")
    print(f"layerscope mean channel activation at the best image: {score:.3f}")


if __name__ == "__main__":
    main()
