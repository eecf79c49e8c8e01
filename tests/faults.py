"""A problem builder whose worker crashes or hangs on chosen candidates (for fault tests)."""
import os
import time

from qaev.search.build import build_local

#: The first layer at these weight bits (weight-only) crashes / hangs the worker.
CRASH_BITS = 2
HANG_BITS = 4


def build_faulty(spec):
    """:func:`qaev.search.build.build_local`, with the problem's ``compute`` crashing the
    worker process when the first layer is at ``CRASH_BITS`` and hanging at ``HANG_BITS``."""
    problem = build_local(spec)
    first = problem.space.searchable[0].name
    compute = problem.compute

    def faulty(config, **kw):
        cfg = config.layers.get(first)
        if cfg is not None and cfg.w_bits == CRASH_BITS and cfg.act.value == "float":
            os._exit(13)  # as a segfault inside ONNX Runtime would
        if cfg is not None and cfg.w_bits == HANG_BITS and cfg.act.value == "float":
            time.sleep(3600)
        return compute(config, **kw)

    problem.compute = faulty
    return problem
