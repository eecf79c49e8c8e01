"""Train the bundled digits CNN and write its ONNX model, data splits and provenance.

Run from the repository root::

    python problems/train_digits.py --out problems/assets

It writes ``digits.onnx`` (input ``input`` [N,1,8,8] float32, output ``logits`` [N,10]),
``digits.npz`` (``calib_x``, ``calib_y``, ``test_x``, ``test_y``) and ``digits.json``
(seed, split sizes, library versions, the test accuracy measured with ONNX Runtime).
The data is scikit-learn's ``load_digits`` (1797 8x8 images, pixel values 0..16),
scaled by 1/16. The split is a seeded permutation into disjoint train / calib / test
parts; the model sees only the train part. torch is needed only to run this script.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time
import warnings

import numpy as np

SEED = 0
N_TRAIN = 1000
N_CALIB = 300  # the remaining 497 samples form the test split
EPOCHS = 80
BATCH_SIZE = 32
LEARNING_RATE = 3e-3  # lr and epochs picked on the calib split, never on test
OPSET = 17


def load_splits(*, seed: int) -> dict[str, np.ndarray]:
    """Loads sklearn digits and splits them with a seeded permutation.

    Args:
        seed: Seed of the permutation.

    Returns:
        ``train_x``, ``train_y``, ``calib_x``, ``calib_y``, ``test_x``, ``test_y``:
        float32 images [N,1,8,8] in 0..1 and int64 labels.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype(np.float32) / np.float32(16.0))[:, None, :, :]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    parts = {
        "train": order[:N_TRAIN],
        "calib": order[N_TRAIN:N_TRAIN + N_CALIB],
        "test": order[N_TRAIN + N_CALIB:],
    }
    out: dict[str, np.ndarray] = {}
    for name, idx in parts.items():
        out[f"{name}_x"] = np.ascontiguousarray(x[idx])
        out[f"{name}_y"] = np.ascontiguousarray(y[idx])
    return out


def build_model():
    """Returns the untrained CNN (no BatchNorm, so nothing needs folding)."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )


def train(model, x: np.ndarray, y: np.ndarray, *, seed: int, epochs: int) -> None:
    """Trains ``model`` in place with Adam on (x, y), deterministically.

    Args:
        model: The torch module.
        x: float32 images [N,1,8,8].
        y: int64 labels [N].
        seed: Seed of the batch order.
        epochs: Number of passes over the data.
    """
    import torch

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(yt), generator=gen)
        for start in range(0, len(yt), BATCH_SIZE):
            idx = order[start:start + BATCH_SIZE]
            opt.zero_grad()
            loss_fn(model(xt[idx]), yt[idx]).backward()
            opt.step()
        sched.step()
    model.eval()


def export_onnx(model, path: pathlib.Path) -> str:
    """Exports ``model`` to ONNX with a dynamic batch axis.

    Tries the dynamo exporter first (needs onnxscript) and falls back to the
    TorchScript exporter.

    Args:
        model: The trained torch module in eval mode.
        path: Destination ``.onnx`` file.

    Returns:
        Which exporter wrote the file: ``"dynamo"`` or ``"torchscript"``.
    """
    import torch

    example = torch.zeros(2, 1, 8, 8)
    names = {"input_names": ["input"], "output_names": ["logits"]}
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)

        batch = torch.export.Dim("batch")
        torch.onnx.export(model, (example,), str(path), dynamo=True, external_data=False,
                          opset_version=max(OPSET, 18), dynamic_shapes=({0: batch},), **names)
        return "dynamo"
    except ImportError:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
            torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=OPSET,
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                              **names)
        return "torchscript"


def ort_accuracy(model_path: pathlib.Path, x: np.ndarray, y: np.ndarray) -> float:
    """Returns top-1 accuracy in percent of the ONNX model in ONNX Runtime."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    logits = sess.run(["logits"], {"input": x})[0]
    return float(np.mean(np.argmax(logits, axis=1) == y) * 100.0)


def check_onnx(model_path: pathlib.Path) -> int:
    """Checks the model, its I/O names and symbolic batch axis; returns the opset."""
    import onnx

    model = onnx.load(str(model_path))
    onnx.checker.check_model(model)
    graph_in, graph_out = model.graph.input[0], model.graph.output[0]
    if graph_in.name != "input" or graph_out.name != "logits":
        raise RuntimeError(f"unexpected I/O names {graph_in.name!r}, {graph_out.name!r}")
    for value in (graph_in, graph_out):
        dim0 = value.type.tensor_type.shape.dim[0]
        if not dim0.dim_param or dim0.HasField("dim_value"):
            raise RuntimeError(f"{value.name}: first axis is not symbolic")
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer):
        raise RuntimeError("model uses external data")
    return max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx"))


def main(argv: list[str] | None = None) -> int:
    """Trains, exports, checks and writes the assets; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, required=True, help="assets folder")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args(argv)

    import sklearn
    import torch

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    started = time.perf_counter()
    data = load_splits(seed=SEED)
    model = build_model()
    train(model, data["train_x"], data["train_y"], seed=SEED, epochs=args.epochs)
    with torch.no_grad():
        torch_pred = model(torch.from_numpy(data["test_x"])).argmax(1).numpy()
    torch_acc = float(np.mean(torch_pred == data["test_y"]) * 100.0)

    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / "digits.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = pathlib.Path(tmp) / "digits.onnx"
        exporter = export_onnx(model, tmp_path)
        opset = check_onnx(tmp_path)
        onnx_path.write_bytes(tmp_path.read_bytes())
    test_acc = ort_accuracy(onnx_path, data["test_x"], data["test_y"])
    calib_acc = ort_accuracy(onnx_path, data["calib_x"], data["calib_y"])

    np.savez_compressed(args.out / "digits.npz", **{
        k: data[k] for k in ("calib_x", "calib_y", "test_x", "test_y")})
    provenance = {
        "dataset": "sklearn.datasets.load_digits, pixel values / 16.0, float32 [N,1,8,8]",
        "seed": SEED,
        "split": {"method": "numpy default_rng(seed).permutation; train | calib | test",
                  "train": int(len(data["train_y"])), "calib": int(len(data["calib_y"])),
                  "test": int(len(data["test_y"]))},
        "training": {"epochs": args.epochs, "batch_size": BATCH_SIZE, "optimizer": "Adam",
                     "lr": LEARNING_RATE, "schedule": "cosine", "data": "train split only",
                     "model_selection": "lr and epochs chosen on calib accuracy"},
        "exporter": exporter,
        "opset": opset,
        "versions": {"sklearn": sklearn.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "onnxruntime": _ort_version(),
                     "python": sys.version.split()[0]},
        "accuracy_percent": {"test_ort": test_acc, "calib_ort": calib_acc,
                             "test_torch": torch_acc},
        "command": "python problems/train_digits.py --out problems/assets"
                   + ("" if args.epochs == EPOCHS else f" --epochs {args.epochs}"),
    }
    (args.out / "digits.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(f"test accuracy (ORT) {test_acc:.2f}% (torch {torch_acc:.2f}%), "
          f"calib {calib_acc:.2f}%, exporter {exporter}, opset {opset}, "
          f"{time.perf_counter() - started:.1f} s -> {args.out}")
    return 0


def _ort_version() -> str:
    import onnxruntime as ort

    return ort.__version__


if __name__ == "__main__":
    sys.exit(main())
