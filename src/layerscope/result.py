"""The ``Result`` base class: every analysis returns one (frozen, saveable, plottable, reportable)."""

from __future__ import annotations

import dataclasses
import html
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from ._io import atomic_write_json
from .errors import StoreError

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

R = TypeVar("R", bound="Result")

_REGISTRY: dict[str, type[Result]] = {}
FORMAT_VERSION = 1
_PLOTLY_SENT = False


@dataclasses.dataclass(frozen=True)
class Result:
    """Base of every analysis result.

    Subclasses are frozen dataclasses whose fields are numpy arrays, dicts of arrays, pandas frames or
    JSON-serialisable values. They implement ``to_frame`` and ``figure``; ``save``/``load`` (JSON +
    safetensors, never pickle), ``_repr_html_`` and ``report_section`` come from here.
    """

    title: ClassVar[str] = "Result"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    # -- what subclasses provide -------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """A tidy pandas DataFrame of the result's numbers."""
        raise NotImplementedError

    def figure(self) -> go.Figure:
        """The result's main plotly figure."""
        raise NotImplementedError

    def figures(self) -> list[go.Figure]:
        """All figures a report shows for this result (default: the main one)."""
        return [self.figure()]

    def summary(self) -> str:
        """One or two sentences saying what the result shows (plain text; escaped by reports)."""
        return ""

    # -- persistence -------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Save to a directory ``path`` holding ``result.json`` and ``arrays.safetensors``."""
        from safetensors.numpy import save_file

        out = Path(path)
        tmp = out.with_name(f".{out.name}.tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        arrays: dict[str, np.ndarray] = {}
        layout: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            layout[f.name] = _encode(f.name, value, arrays)
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp / "arrays.safetensors"))
        meta = {
            "type": type(self).__name__,
            "module": type(self).__module__,
            "format_version": FORMAT_VERSION,
            "fields": layout,
        }
        atomic_write_json(tmp / "result.json", meta)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
        return out

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        """Load a result saved by ``save``; ``Result.load`` dispatches on the saved type name."""
        from safetensors.numpy import load_file

        p = Path(path)
        meta_path = p / "result.json"
        if not meta_path.is_file():
            raise StoreError(
                f"{p} is not a saved layerscope result (no result.json); save one with .save(path)"
            )
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        type_name = meta.get("type")
        module = meta.get("module")
        ours = isinstance(module, str) and (module == "layerscope" or module.startswith("layerscope."))
        if cls is Result and type_name not in _REGISTRY and ours:
            # a class registers itself when its module is imported; only our own modules are imported
            import importlib

            try:
                importlib.import_module(str(module))
            except ImportError as e:
                raise StoreError(
                    f"{p} holds a {type_name!r} from {module}, which failed to import: {e}"
                ) from e
        target = _REGISTRY.get(type_name) if cls is Result else cls
        if target is None:
            raise StoreError(
                f"{p} holds a {type_name!r}, a result type not known here; import the module that defines it "
                "first (results saved by this version record it and are found automatically)"
            )
        if cls is not Result and type_name != cls.__name__:
            raise StoreError(f"{p} holds a {type_name!r}, not a {cls.__name__}; load it with Result.load")
        arrays = load_file(str(p / "arrays.safetensors"))
        kwargs = {name: _decode(name, spec, arrays) for name, spec in meta["fields"].items()}
        return target(**kwargs)  # type: ignore[return-value]

    # -- display -----------------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        parts = [f"<h4>{html.escape(self.title)}</h4>"]
        if self.summary():
            parts.append(f"<p>{html.escape(self.summary())}</p>")
        try:
            frame = self.to_frame()
            parts.append(frame.head(50).to_html(escape=True, max_cols=20))
        except NotImplementedError:
            pass
        try:
            global _PLOTLY_SENT
            # plotly.js inlined once per kernel (no CDN: notebooks must work offline too)
            parts.append(self.figure().to_html(full_html=False, include_plotlyjs=not _PLOTLY_SENT))
            _PLOTLY_SENT = True
        except NotImplementedError:
            pass
        return "\n".join(parts)


def _encode(name: str, value: Any, arrays: dict[str, np.ndarray]) -> Any:
    import pandas as pd
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray) and value.dtype != object and value.dtype.kind not in "US":
        arrays[name] = value
        return {"kind": "array"}
    if isinstance(value, pd.DataFrame):
        return {"kind": "frame", "value": json.loads(value.to_json(orient="split", double_precision=15))}
    if (
        isinstance(value, dict)
        and value
        and all(isinstance(v, np.ndarray | torch.Tensor) for v in value.values())
    ):
        keys = []
        for k, v in value.items():
            arr = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v
            arrays[f"{name}/{k}"] = arr
            keys.append(k)
        return {"kind": "array_dict", "keys": keys}
    if isinstance(value, np.ndarray):
        return {"kind": "json_array", "value": value.tolist()}
    if isinstance(value, tuple):
        return {"kind": "tuple", "value": json.loads(json.dumps(list(value), default=_jsonable))}
    return {"kind": "json", "value": json.loads(json.dumps(value, default=_jsonable))}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"cannot save a {type(obj).__name__} in a Result; use arrays, frames or JSON values")


def _decode(name: str, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    import pandas as pd

    kind = spec["kind"]
    if kind == "array":
        return arrays[name]
    if kind == "array_dict":
        return {k: arrays[f"{name}/{k}"] for k in spec["keys"]}
    if kind == "frame":
        v = spec["value"]
        return pd.DataFrame(v["data"], index=v["index"], columns=v["columns"])
    if kind == "json_array":
        return np.array(spec["value"])
    if kind == "tuple":
        return tuple(spec["value"])
    return spec["value"]
