"""A matplotlib figure as PNG bytes, drawn on the Agg canvas (no display, no pyplot state)."""
from __future__ import annotations

import io
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from qaev.files import write_atomic

__all__ = ["png_bytes"]


def png_bytes(fig: Figure, path: Path | None = None, *, dpi: int = 110) -> bytes:
    """``fig`` as PNG bytes, also written to ``path`` (atomically) when given."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    data = buf.getvalue()
    if path is not None:
        write_atomic(path, data)
    return data
