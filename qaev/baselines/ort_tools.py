"""ONNX Runtime's own quantization tools, called as a user calls them on the float model.

``quantize_static`` (QDQ, defaults, the problem's calibration data), ``quantize_dynamic``
(int8 weights, run-time activation scales) and the 4-bit block-wise weight-only
``MatMulNBitsQuantizer`` (only where the model has MatMuls). Each output file is measured
with the problem's evaluator; these models have no qaev config, so their size is the bytes
of the file's initializers (the same definition as ``size_mb``: stored weights, scales,
zero points and biases) and any hardware estimate comes from the nearest qaev config,
labelled as such in ``extra``. ORT's string options stay inside this module.
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from pathlib import Path
from typing import Callable

import onnx

from qaev.baselines.result import MethodResult, Point
from qaev.config import ActMode, Granularity, LayerConfig, QuantConfig
from qaev.files import write_atomic
from qaev.quantize import uniform_config

__all__ = ["ORT_TOOLS", "ort_baseline", "initializer_bytes"]


class _Reader:
    """An ORT ``CalibrationDataReader`` over a dataset's batches."""

    def __init__(self, dataset, batch_size: int) -> None:
        self._batches = iter(dataset.batches(batch_size=batch_size))

    def get_next(self):
        return next(self._batches, None)

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


def _static(src: Path, dst: Path, calib) -> dict:
    from onnxruntime.quantization import QuantFormat, quantize_static

    quantize_static(str(src), str(dst), _Reader(calib, 64), quant_format=QuantFormat.QDQ)
    return {"call": "quantize_static(model, out, reader, quant_format=QDQ)", "defaults": "MinMax, per-tensor, S8S8"}


def _dynamic(src: Path, dst: Path, calib) -> dict:
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(str(src), str(dst))
    return {"call": "quantize_dynamic(model, out)", "defaults": "int8 weights, per-tensor"}


def _nbits(src: Path, dst: Path, calib) -> dict:
    from onnxruntime.quantization import matmul_nbits_quantizer as nbits

    logging.getLogger(nbits.__name__).setLevel(logging.WARNING)
    quantizer = nbits.MatMulNBitsQuantizer(onnx.load(str(src)), bits=4, block_size=32)
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst))
    return {"call": "MatMulNBitsQuantizer(model, bits=4, block_size=32).process()", "defaults": "MatMul, asymmetric"}


#: Tool name -> (runner, the nearest qaev setting for hardware estimates, layer filter).
ORT_TOOLS: dict[str, tuple[Callable, LayerConfig, Callable]] = {
    "quantize_static": (_static, LayerConfig(w_bits=8, granularity=Granularity.PER_TENSOR, act=ActMode.STATIC),
                        lambda layer: True),
    "quantize_dynamic": (_dynamic, LayerConfig(w_bits=8, granularity=Granularity.PER_TENSOR, act=ActMode.DYNAMIC),
                         lambda layer: True),
    "matmul_nbits4": (_nbits, LayerConfig(w_bits=4, granularity=Granularity.BLOCK32, symmetric=False,
                                          act=ActMode.FLOAT), lambda layer: layer.op_type == "MatMul"),
}


@contextlib.contextmanager
def _quiet_root_logger():
    """ORT's tools log advice on the root logger; hold it at ERROR while they run."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def initializer_bytes(model: onnx.ModelProto) -> int:
    """Bytes of every initializer as stored (packed types at their packed size)."""
    total = 0
    for init in model.graph.initializer:
        total += len(init.raw_data) if init.raw_data else onnx.numpy_helper.to_array(init).nbytes
    return total


def _source(problem, workdir: Path) -> Path:
    path = problem.quantizer.model.path
    if path is not None and Path(path).is_file():
        return Path(path)
    out = workdir / "float.onnx"
    write_atomic(out, problem.quantizer.model.proto.SerializeToString())
    return out


def _point(problem, name: str, data: bytes, options: dict) -> Point:
    evaluator = problem.evaluator
    measured = evaluator.measure(data)
    proto = onnx.load_model_from_string(data)
    values = {"acc_drop": evaluator.drop(measured.value), "size_mb": initializer_bytes(proto) / 1e6}
    extra = {**options, "file_mb": len(data) / 1e6}
    layers = [layer for layer in problem.quantizer.layers if ORT_TOOLS[name][2](layer)]
    nearest = uniform_config(layers, ORT_TOOLS[name][1])
    if problem.table is not None:
        from qaev.quantize.sizes import estimate_cost

        report = estimate_cost(problem.quantizer.layers, QuantConfig(layers=nearest.layers), problem.table)
        values.update(est_latency_ms=report.est_latency_ms, est_energy_mj=report.est_energy_mj)
        extra["estimated_from"] = "the nearest qaev config: " + ", ".join(
            sorted({f"{cfg.w_bits}-bit {cfg.granularity.value} {cfg.act.value}" for cfg in nearest.layers.values()}))
    if "host_latency_ms" in problem.objectives:
        from qaev.evaluation.latency import host_latency_ms

        values["host_latency_ms"] = host_latency_ms(proto, next(iter(evaluator.data.batches(batch_size=8))))
    return Point(label=name, objectives=values, metric=measured.value, model=data, extra=extra)


def ort_baseline(problem, calib, *, tools=None, budget: int | None = None) -> MethodResult:
    """Run ONNX Runtime's tools on the float model file and measure each output.

    Args:
        problem: the :class:`~qaev.search.problem.QuantizationProblem` (its evaluator and model).
        calib: the calibration dataset (``quantize_static`` reads it, as the search did).
        tools: names from :data:`ORT_TOOLS` (default: all that apply).
        budget: most full evaluations (one per tool).

    Returns:
        One point per tool; a tool that fails gives a point with ``error`` set.
    """
    start = time.perf_counter()
    chosen = list(tools or ORT_TOOLS)
    points, notes, used = [], [], 0
    has_matmul = any(layer.op_type == "MatMul" for layer in problem.quantizer.layers)
    with tempfile.TemporaryDirectory(prefix="qaev-ort-") as tmp:
        workdir = Path(tmp)
        src = _source(problem, workdir)
        for name in chosen:
            if name == "matmul_nbits4" and not has_matmul:
                notes.append("matmul_nbits4 skipped: the model has no MatMul with a constant weight")
                continue
            if budget is not None and used >= budget:
                notes.append(f"budget spent before {name}")
                break
            used += 1
            dst = workdir / f"{name}.onnx"
            try:
                with _quiet_root_logger():
                    options = ORT_TOOLS[name][0](src, dst, calib)
                points.append(_point(problem, name, dst.read_bytes(), options))
            except Exception as exc:  # a tool failing is a result to report, not a crash
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                points.append(Point(label=name, objectives={}, metric=None, error=f"{type(exc).__name__}: {first}"))
    return MethodResult(method="ort_tools", points=tuple(points), evaluations=used,
                        wall_s=time.perf_counter() - start, notes=tuple(notes))
