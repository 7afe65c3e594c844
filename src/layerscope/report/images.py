"""Image-grid figures: plotly ``Image`` traces from PNG data URIs (reports stay self-contained)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from .figures import apply_style


def to_uint8(images: np.ndarray) -> np.ndarray:
    """``[N, H, W, 3]`` floats in ``[0, 1]`` (or ``[N, H, W]`` masks) -> uint8 RGB ``[N, H, W, 3]``."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = np.repeat(x[..., None], 3, axis=-1)
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)


def image_grid(
    images: np.ndarray,
    titles: Sequence[str],
    *,
    title: str | None = None,
    cols: int | None = None,
    tile: int = 150,
) -> go.Figure:
    """A grid of images, one plotly ``Image`` trace per tile, with a title above each."""
    from plotly.subplots import make_subplots

    imgs = to_uint8(images)
    n = len(imgs)
    cols = cols or min(n, 8) or 1
    rows = max(1, (n + cols - 1) // cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[str(t) for t in titles] + [""] * (rows * cols - n),
        horizontal_spacing=0.01,
        vertical_spacing=0.06 if rows > 1 else 0.02,
    )
    for i in range(n):
        # a PNG data URI, not ``z``: plotly serialises ``z`` as a typed array that plotly.js's image trace
        # cannot read (blank tile, "createImageData" error), and PNG is several times smaller
        fig.add_trace(
            go.Image(source=png_data_uri(imgs[i]), hoverinfo="skip"), row=i // cols + 1, col=i % cols + 1
        )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    for ann in fig.layout.annotations:
        ann.font = {"size": 11}
    fig.update_layout(title={"text": title} if title else None, margin={"l": 10, "r": 10, "t": 60, "b": 10})
    return apply_style(fig, height=rows * tile + 80)


def png_data_uri(image: np.ndarray) -> str:
    """uint8 ``[H, W, 3]`` -> ``data:image/png;base64,...`` (self-contained: reports open offline)."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
