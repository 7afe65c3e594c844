"""PGD on 256 images: layerscope.optimize.pgd vs torchattacks.PGD, same model, data, ε, α and steps, one run.

Model: the small CIFAR-10 CNN (``cifar10-cnn``, trained once on the first 8,000 bundled CIFAR-10 test images
and cached); images: 256 held-out CIFAR-10 images in [0, 1]; the model's normalisation sits inside a
wrapper for torchattacks (its convention) and is applied by layerscope from the ImageSpec. Settings:
torchattacks defaults (L∞, ε = 8/255, α = 2/255, 10 steps, random start). Reported: success rate
(prediction != label, over all 256 images) and median wall times: the attack loops alone (layerscope's timer stops before
its prediction passes) and the same outputs (torchattacks plus the two forward passes for the predictions
before/after that layerscope's result carries); target: success within 1 point, time ≤ 1.0×.

torchattacks is installed in the bench env only (it does not need torchvision at import time):

    HF_HUB_OFFLINE=1 bench/.venv-bench/bin/python bench/optimize_pgd.py --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import torchattacks

    from layerscope.data.corpus import cifar10_test
    from layerscope.optimize import pgd
    from layerscope.optimize._models import cifar_cnn

    subject = cifar_cnn()
    images, labels, _ = cifar10_test()
    x = torch.as_tensor(images[8000 : 8000 + args.n]).permute(0, 3, 1, 2).float() / 255
    y = torch.as_tensor(labels[8000 : 8000 + args.n])
    spec = subject.image

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = subject.model

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return self.net(spec.normalise(z))

    wrapped = Wrapped().eval()
    eps, alpha, steps = 8 / 255, 2 / 255, 10
    t_ls, t_ta, s_ls, s_ta = [], [], [], []
    loop_ls, full_ta = [], []  # the attack loop alone; torchattacks plus the predictions our result carries
    for r in range(args.rounds):
        for who in ("ls", "ta") if r % 2 == 0 else ("ta", "ls"):
            if who == "ls":
                t0 = time.perf_counter()
                res = pgd(subject, x, y, eps=eps, alpha=alpha, steps=steps, seed=r)
                t_ls.append(time.perf_counter() - t0)
                loop_ls.append(res.seconds)
                s_ls.append(res.success_rate)
            else:
                torch.manual_seed(r)
                atk = torchattacks.PGD(wrapped, eps=eps, alpha=alpha, steps=steps, random_start=True)
                t0 = time.perf_counter()
                adv = atk(x, y)
                t_ta.append(time.perf_counter() - t0)
                with torch.no_grad():  # the predictions before/after that layerscope's result carries
                    after = wrapped(adv).argmax(1)
                    _before = wrapped(x).argmax(1)
                full_ta.append(time.perf_counter() - t0)
                s_ta.append(float((after != y).float().mean()))
        print(
            f"round {r}: layerscope {t_ls[-1]:.2f}s {s_ls[-1]:.1%}  torchattacks {t_ta[-1]:.2f}s {s_ta[-1]:.1%}"
        )
    with torch.no_grad():
        clean = float((wrapped(x).argmax(1) == y).float().mean())
    a, b = statistics.median(t_ls), statistics.median(t_ta)
    la, fb = statistics.median(loop_ls), statistics.median(full_ta)
    print(
        f"{args.n} images, clean accuracy {clean:.1%}, eps 8/255, alpha 2/255, 10 steps, torch threads {torch.get_num_threads()}"
    )
    print(
        f"success  layerscope {np.mean(s_ls):.1%}  torchattacks {np.mean(s_ta):.1%}  "
        f"diff {100 * (np.mean(s_ls) - np.mean(s_ta)):+.1f} points (target within 1)"
    )
    print(
        f"median seconds, attack loops only: layerscope {la:.2f}  torchattacks {b:.2f}  ratio {la / b:.2f}x "
        "(target <= 1.0x)"
    )
    print(
        f"median seconds, same outputs (attack + predictions before/after): layerscope {a:.2f}  "
        f"torchattacks {fb:.2f}  ratio {a / fb:.2f}x"
    )
    print(f"  (layerscope's full call vs torchattacks' attack alone: {a / b:.2f}x)")


if __name__ == "__main__":
    main()
