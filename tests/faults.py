"""A problem recipe whose worker crashes or hangs on chosen candidates (for fault tests)."""
import os
import time
from dataclasses import dataclass

from qaev.runtime.parallel import Recipe


@dataclass(frozen=True)
class FaultyRecipe(Recipe):
    """Crash the worker process when the first layer is at ``crash_bits`` weight bits;
    hang when it is at ``hang_bits``."""

    crash_bits: int = 2
    hang_bits: int = 4

    def build(self):
        problem = super().build()
        first = problem.space.searchable[0].name
        compute = problem.compute

        def faulty(config, **kw):
            cfg = config.layers.get(first)
            if cfg is not None and cfg.w_bits == self.crash_bits and cfg.act.value == "float":
                os._exit(13)  # as a segfault inside ONNX Runtime would
            if cfg is not None and cfg.w_bits == self.hang_bits and cfg.act.value == "float":
                time.sleep(3600)
            return compute(config, **kw)

        problem.compute = faulty
        return problem
