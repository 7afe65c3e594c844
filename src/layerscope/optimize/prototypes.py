"""Class prototypes (many classes in one batched run) and class entanglement.

A prototype is an image optimised to maximise its class logit while pushing the other logits down
(Leap Labs' prototype engine, Tagade & Rumbelow 2023). Entanglement between classes i and j is read two
ways: (a) how much probability the model gives class j on class i's prototype, and (b) how similar the
class-mean penultimate activations of i and j are on real data. Both are compared with the model's
empirical confusion matrix by a Spearman rank correlation over class pairs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from .._precision import check_precision
from ..capture import capture
from ..errors import ConfigError
from ..report.figures import heatmap
from ..result import Result
from ._figures import image_grid
from ._models import as_subject, check_logits_model, image_spec, to_images
from .loop import optimize
from .objectives import check_not_probabilities, logit, logit_margin
from .param import image_param
from .regularizers import get_regularizers
from .transforms import Transform, get_transform

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go


@dataclasses.dataclass(frozen=True)
class PrototypeResult(Result):
    """One optimised image per class (batched), with the model's softmax on each.

    Attributes:
        images: ``[n, H, W, 3]`` in ``[0, 1]``.
        classes: class index of each prototype.
        class_names: names of all the model's classes (or ``"0"``, ``"1"``…).
        probs: softmax of the model on each prototype, ``[n, n_classes]``.
        history: objective per step, ``[steps, n]``.
    """

    images: np.ndarray
    classes: list[int]
    class_names: list[str]
    probs: np.ndarray
    history: np.ndarray
    model: str
    objective: str
    settings: dict[str, Any]
    steps_per_second: float
    seconds: float

    title: ClassVar[str] = "Class prototypes"

    @property
    def target_prob(self) -> np.ndarray:
        """Probability of each prototype's own class, ``[n]``."""
        return self.probs[np.arange(len(self.classes)), self.classes]

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        top = self.probs.argmax(1)
        return pd.DataFrame(
            {
                "class": self.classes,
                "name": [self.class_names[c] for c in self.classes],
                "target_prob": self.target_prob,
                "top_class": [self.class_names[t] for t in top],
                "top_prob": self.probs.max(1),
            }
        )

    def figure(self) -> go.Figure:
        titles = [
            f"{self.class_names[c]} (p={p:.2f})" for c, p in zip(self.classes, self.target_prob, strict=True)
        ]
        return image_grid(
            self.images, titles, title=f"Class prototypes · {self.model}", cols=min(len(titles), 5)
        )

    def figures(self) -> list[go.Figure]:
        cols = sorted(set(self.classes))
        names = [self.class_names[c] for c in cols]
        fig = heatmap(
            self.probs[:, cols],
            x=names,
            y=[f"{self.class_names[c]} #{i}" for i, c in enumerate(self.classes)],
            title="Softmax of each prototype (rows) over the prototyped classes",
            x_title="predicted class",
            y_title="prototype",
            colorbar_title="p",
            zmin=0.0,
            zmax=1.0,
        )
        return [self.figure(), fig]

    def summary(self) -> str:
        tp = self.target_prob
        return (
            f"{len(self.classes)} prototypes of {self.model} in one batched run "
            f"({self.settings.get('steps')} steps, {self.seconds:.1f} s); own-class probability "
            f"median {np.median(tp):.3f}, min {tp.min():.3f}."
        )


def prototypes(
    model: Any,
    classes: Sequence[int] | None = None,
    *,
    steps: int = 512,
    size: int | None = None,
    param: str = "fourier",
    objective: str = "margin",
    transforms: str | Transform | None = "standard",
    lr: float | str = 0.05,
    regularizers: dict[str, float] | None = None,
    seed: int = 0,
    progress: bool = False,
    precision: str = "float32",
) -> PrototypeResult:
    """One prototype per class in ``classes`` (default: all classes), optimised together in one batch.

    Args:
        model: a vision ``Subject`` or ``nn.Module`` returning logits.
        classes: class indices (repeat an index for several prototypes of one class).
        objective: ``margin`` (class logit minus the mean other logit) or ``logit``.
        size: image side in pixels (default: the model's input size).
        Other arguments as in :func:`layerscope.optimize.visualize`.
        precision: ``"float32"`` (default), ``"bfloat16"`` (the model in bfloat16 autocast) or ``"auto"``
            (bfloat16 where it is native and measured faster, see :func:`~layerscope.optimize.optimize`);
            the images, objective and reported probabilities stay float32. ``settings["precision"]``
            records what ran.
    """
    subject = as_subject(model)
    spec = image_spec(subject)
    check_logits_model(subject)
    check_precision(precision)
    n_classes = _n_classes(subject)
    cls = list(range(n_classes)) if classes is None else [int(c) for c in classes]
    if not cls:
        raise ConfigError("classes is empty; pass at least one class index")
    bad = [c for c in cls if not 0 <= c < n_classes]
    if bad:
        raise ConfigError(
            f"class index {bad[0]} is out of range: the model has {n_classes} classes (0..{n_classes - 1})"
        )
    if objective not in ("margin", "logit"):
        raise ConfigError(f"unknown prototype objective {objective!r}; use 'margin' or 'logit'")
    obj = logit_margin(cls) if objective == "margin" else logit(cls)
    p = image_param(param, len(cls), size or spec.size, spec=spec, seed=seed, device=subject.device)
    out = optimize(
        subject,
        obj,
        p,
        steps=steps,
        lr=lr,
        transform=get_transform(transforms, size=size or spec.size),
        regularizers=get_regularizers(regularizers),
        seed=seed,
        progress=progress,
        precision=precision,
    )
    probs = predict_proba(subject, out.best)
    names = subject.class_names or [str(i) for i in range(n_classes)]
    return PrototypeResult(
        images=out.best.permute(0, 2, 3, 1).cpu().float().numpy(),
        classes=cls,
        class_names=list(names),
        probs=probs,
        history=out.history,
        model=subject.name,
        objective=out.objective,
        settings={
            "steps": steps,
            "lr": out.lr,
            "size": size or spec.size,
            "param": param,
            "seed": seed,
            "regularizers": dict(regularizers or {}),
            "precision": out.precision,
        },
        steps_per_second=out.steps_per_second,
        seconds=out.seconds,
    )


def _n_classes(subject: Any) -> int:
    spec = image_spec(subject)
    with torch.no_grad():
        out = subject.model(torch.full((1, 3, spec.size, spec.size), 0.0, device=subject.device))
    logits = getattr(out, "logits", out)
    check_not_probabilities(logits)
    return int(logits.shape[-1])


@torch.no_grad()
def predict_proba(subject: Any, images: torch.Tensor, *, batch_size: int = 256) -> np.ndarray:
    """Softmax of the model on ``[n, 3, H, W]`` images in ``[0, 1]`` (resized to the input size)."""
    spec = image_spec(subject)
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].to(subject.device).float()
        if x.shape[-1] != spec.size:
            x = torch.nn.functional.interpolate(
                x, size=(spec.size, spec.size), mode="bilinear", align_corners=False
            )
        logits = subject.model(spec.normalise(x))
        out.append(torch.softmax(getattr(logits, "logits", logits).float(), -1).cpu())
    return torch.cat(out).numpy()


# -- entanglement ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class EntanglementResult(Result):
    """Class × class entanglement from prototypes and from penultimate similarity, vs. the confusion matrix.

    Attributes:
        classes, class_names: the classes compared (rows/columns of every matrix).
        from_prototypes: ``P[i, j]`` = mean softmax of class j on class i's prototypes.
        from_similarity: cosine similarity of centred class-mean penultimate activations.
        confusion: row-normalised confusion matrix on the real data (rows: true class).
        spearman: rank correlation over class pairs (i < j) of each entanglement with the symmetrised
            confusion: ``{"prototypes": rho, "similarity": rho}`` (with p-values under ``*_p``).
        accuracy: accuracy on the real data.
    """

    classes: list[int]
    class_names: list[str]
    from_prototypes: np.ndarray
    from_similarity: np.ndarray
    confusion: np.ndarray
    spearman: dict[str, float]
    accuracy: float
    model: str
    penultimate: str

    title: ClassVar[str] = "Class entanglement"

    def pairs(self) -> pd.DataFrame:
        """Every class pair (i < j) with its two entanglement scores and confusion, most entangled first."""
        import pandas as pd

        k = len(self.classes)
        iu = np.triu_indices(k, 1)
        proto = _sym(self.from_prototypes)[iu]
        sim = self.from_similarity[iu]
        conf = _sym(self.confusion)[iu]
        df = pd.DataFrame(
            {
                "class_a": [self.class_names[self.classes[i]] for i in iu[0]],
                "class_b": [self.class_names[self.classes[j]] for j in iu[1]],
                "prototype_entanglement": proto,
                "similarity": sim,
                "confusion": conf,
            }
        )
        df["confusion_rank"] = df["confusion"].rank(ascending=False).astype(int)
        # unexpected: entangled by prototypes (top quartile) but rarely confused (bottom half)
        df["unexpected"] = (df["prototype_entanglement"] >= df["prototype_entanglement"].quantile(0.75)) & (
            df["confusion_rank"] > len(df) / 2
        )
        return df.sort_values("prototype_entanglement", ascending=False).reset_index(drop=True)

    def to_frame(self) -> pd.DataFrame:
        return self.pairs()

    def figure(self) -> go.Figure:
        names = [self.class_names[c] for c in self.classes]
        m = self.from_prototypes.copy()
        np.fill_diagonal(m, np.nan)
        return heatmap(
            m,
            x=names,
            y=names,
            title=f"Entanglement from prototypes (Spearman vs confusion: {self.spearman['prototypes']:.2f})",
            x_title="probability given to class",
            y_title="prototype of class",
            colorbar_title="p",
        )

    def figures(self) -> list[go.Figure]:
        names = [self.class_names[c] for c in self.classes]
        sim = self.from_similarity.copy()
        np.fill_diagonal(sim, np.nan)
        conf = self.confusion.copy()
        np.fill_diagonal(conf, np.nan)
        return [
            self.figure(),
            heatmap(
                sim,
                x=names,
                y=names,
                title=f"Penultimate class-mean similarity (Spearman vs confusion: {self.spearman['similarity']:.2f})",
                colorbar_title="cos",
            ),
            heatmap(
                conf,
                x=names,
                y=names,
                title="Empirical confusion (off-diagonal)",
                x_title="predicted",
                y_title="true",
                colorbar_title="rate",
            ),
        ]

    def summary(self) -> str:
        top = self.pairs().head(3)
        pairs = ", ".join(f"{a}–{b}" for a, b in zip(top["class_a"], top["class_b"], strict=True))
        return (
            f"Most entangled classes of {self.model}: {pairs}. Rank correlation with the confusion matrix "
            f"(accuracy {self.accuracy:.1%}): prototypes {self.spearman['prototypes']:.2f}, "
            f"penultimate similarity {self.spearman['similarity']:.2f}."
        )


def _sym(m: np.ndarray) -> np.ndarray:
    return (m + m.T) / 2


def penultimate_site(subject: Any) -> str:
    """``pooled`` where the adapter has it; else the module feeding the last ``nn.Linear`` of a Sequential."""
    try:
        subject.adapter.resolve("pooled")
        return "pooled"
    except Exception:
        pass
    parent_name, prev = "", None
    for name, mod in subject.model.named_modules():
        if isinstance(mod, nn.Sequential):
            kids = list(mod.named_children())
            for j, (_kname, kmod) in enumerate(kids):
                if isinstance(kmod, nn.Linear) and j > 0:
                    parent_name = name
                    prev = kids[j - 1][0]
    if prev is None:
        raise ConfigError(
            f"cannot find the penultimate layer of {subject.name}; pass penultimate='module:<name>'"
        )
    return "module:" + (f"{parent_name}.{prev}" if parent_name else prev)


@torch.no_grad()
def entanglement(
    model: Any,
    protos: PrototypeResult,
    images: Any,
    labels: Any,
    *,
    penultimate: str | None = None,
    batch_size: int = 256,
) -> EntanglementResult:
    """Entanglement matrices for the prototyped classes, checked against the confusion matrix on ``images``.

    Args:
        model: the model the prototypes were made for.
        protos: a :class:`PrototypeResult` (its classes are the rows/columns).
        images: real images, uint8 ``[N, H, W, 3]`` or float ``[N, 3, H, W]`` in ``[0, 1]``.
        labels: their class indices ``[N]``.
        penultimate: site of the penultimate features (default: ``pooled`` or the input of the last Linear).
    """
    from scipy.stats import spearmanr

    subject = as_subject(model)
    spec = image_spec(subject)
    x = to_images(images)
    y = torch.as_tensor(np.asarray(labels)).long()
    if len(y) != len(x):
        raise ConfigError(f"{len(x)} images but {len(y)} labels")
    classes = sorted(set(protos.classes))
    k = len(classes)
    if k < 3:
        raise ConfigError("entanglement needs prototypes of at least 3 classes")
    pos = {c: i for i, c in enumerate(classes)}
    # (a) prototypes: mean softmax over the prototypes of each class, restricted to the compared classes
    proto = np.zeros((k, k))
    counts = np.zeros(k)
    for row, c in zip(protos.probs, protos.classes, strict=True):
        proto[pos[c]] += row[classes]
        counts[pos[c]] += 1
    proto /= counts[:, None]
    # (b) class-mean penultimate activations + predictions, one pass over the data
    site = penultimate or penultimate_site(subject)
    feats, preds = [], []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(subject.device)
        if xb.shape[-1] != spec.size:
            xb = torch.nn.functional.interpolate(
                xb, size=(spec.size, spec.size), mode="bilinear", align_corners=False
            )
        with capture(subject, [site], stop=False) as tr:
            logits = subject.model(spec.normalise(xb))
        preds.append(getattr(logits, "logits", logits).argmax(-1).cpu())
        f = tr[site]
        feats.append(f.flatten(1).float().cpu() if f.ndim == 2 else f.float().flatten(2).mean(2).cpu())
    feat = torch.cat(feats)  # N, d
    pred = torch.cat(preds)
    keep = torch.as_tensor([int(v) in pos for v in y])
    if int(keep.sum()) == 0:
        raise ConfigError("none of the labels belongs to the prototyped classes")
    means = torch.stack([feat[y == c].mean(0) for c in classes])  # k, d
    means = means - feat[keep].mean(0)
    means = torch.nn.functional.normalize(means, dim=1)
    sim = (means @ means.T).numpy()
    conf = np.zeros((k, k))
    for t, p in zip(y[keep].tolist(), pred[keep].tolist(), strict=True):
        if p in pos:
            conf[pos[t], pos[p]] += 1
    conf = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    iu = np.triu_indices(k, 1)
    target = _sym(conf)[iu]
    rho_p = spearmanr(_sym(proto)[iu], target)
    rho_s = spearmanr(sim[iu], target)
    return EntanglementResult(
        classes=classes,
        class_names=list(protos.class_names),
        from_prototypes=proto,
        from_similarity=sim,
        confusion=conf,
        spearman={
            "prototypes": float(rho_p.statistic),
            "prototypes_p": float(rho_p.pvalue),
            "similarity": float(rho_s.statistic),
            "similarity_p": float(rho_s.pvalue),
        },
        accuracy=float((pred == y).float().mean()),
        model=subject.name,
        penultimate=site,
    )
