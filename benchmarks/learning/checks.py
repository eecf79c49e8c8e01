"""The ``--interpreter`` and ``--layer-speed`` checks of ``benchmarks/learned_rounding.py``: exactness and speed."""
from __future__ import annotations

import time

import numpy as np

from qaev.problems import problem_parts


def _timed(fn, repeat: int = 3) -> float:
    """The fastest of ``repeat`` calls after one warm-up (other jobs share the machine);
    called at once, so the closures below see the loop variables of their own pass."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _onnx2torch_line(proto, feeds, ref) -> str:
    """onnx2torch on the model as is and down-converted to opset 17 (if it is importable)."""
    import torch

    try:
        import onnx2torch
    except ImportError:
        return "onnx2torch: not importable here"
    from onnx import version_converter

    out = []
    for label, model in (("opset 21", proto), ("opset 17", version_converter.convert_version(proto, 17))):
        try:
            module = onnx2torch.convert(model)
            args = [torch.from_numpy(np.array(feeds[i.name])) for i in model.graph.input if i.name in feeds]
            with torch.no_grad():
                got = module(*args)
            got = (got[0] if isinstance(got, (list, tuple)) else got).numpy()
            with torch.no_grad():
                sec = _timed(lambda: module(*args))  # noqa: B023
            out.append(f"{label}: max |diff| {np.abs(got - ref).max():.2e}, {sec * 1000:.0f} ms")
        except Exception as exc:  # report whatever it raises
            out.append(f"{label}: {type(exc).__name__}: {str(exc)[:120]}")
    return "onnx2torch " + "; ".join(out)


def interpreter_check(threads: int) -> None:
    """Exactness and speed of the torch interpreter against ONNX Runtime (one batch each)."""
    import torch

    from qaev.model.session import make_session
    from qaev.quantize.learned.torch_graph import TorchGraph

    torch.set_num_threads(threads)
    for name, batch in (("efficientnet-lite0", 8), ("minilm-l6-stsb", 16)):
        parts = problem_parts(name, seed=0)
        feeds = next(iter(parts.calib.batches(batch_size=batch)))
        proto = parts.model.proto
        session = make_session(proto, threads=threads)
        ref = session.run(None, feeds)[0]
        graph = TorchGraph(proto)
        tensors = {k: torch.from_numpy(np.array(v)) for k, v in feeds.items()}
        with torch.no_grad():
            got = graph.run(tensors)[graph.outputs[0]].numpy()
            fwd = _timed(lambda: graph.run(tensors))  # noqa: B023
        weights = {k: v.clone().requires_grad_(True) for k, v in graph.constants.items() if v.dim() >= 2}
        fwd_bwd = _timed(lambda: graph.run(tensors, weights=weights)[graph.outputs[0]].square().sum().backward(), 2)  # noqa: B023
        ort_s = _timed(lambda: session.run(None, feeds))  # noqa: B023
        print(f"{name} (batch {batch}, {threads} thread(s)): ours max |diff| {np.abs(got - ref).max():.2e} "
              f"(output max {np.abs(ref).max():.3g}); ORT {ort_s * 1000:.0f} ms, ours forward {fwd * 1000:.0f} ms, "
              f"forward+backward {fwd_bwd * 1000:.0f} ms")
        print("   ", _onnx2torch_line(proto, feeds, ref))


def layer_speed_check(threads: int) -> None:
    """One AdaRound step on Lite0-like layer shapes: the Hessian form vs 4096-row minibatches."""
    import torch

    from qaev.quantize.learned.adaround import hessian_factor

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    print(f"{'layer (inputs n, outputs R, calibration rows)':48s} {'hessian ms':>10s} {'rows ms':>8s}")
    shapes = (("stem 3x3 (27, 32, 2.5M)", 27, 32, 2_508_800), ("expand 1x1 (112, 672, 39k)", 112, 672, 39_200),
              ("project 1x1 (1152, 320, 9.8k)", 1152, 320, 9_800), ("classifier (1280, 1000, 200)", 1280, 1000, 200))
    for label, n, r, rows in shapes:
        x = rng.normal(size=(min(rows, 20_000), n)).astype(np.float32)
        x64 = x.astype(np.float64)
        factor = torch.from_numpy(hessian_factor((x64.T @ x64 / len(x))[None])[0])
        w = torch.randn(r, n, requires_grad=True)
        batch = torch.from_numpy(x[:4096])
        hess = _timed(lambda: ((w @ factor).square().sum()).backward())  # noqa: B023
        mini = _timed(lambda: ((w @ batch.T).square().sum() / len(batch)).backward())  # noqa: B023
        print(f"{label:48s} {hess * 1000:10.2f} {mini * 1000:8.2f}")
