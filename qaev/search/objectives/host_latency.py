"""``host_latency_ms``: median latency of the candidate's model in ONNX Runtime on this
machine (measured, one thread), on the problem's latency input: the first evaluation batch
of 8, or what the problem names instead (a decoder's: one generated token at batch 1 with
the key/value cache of a prompt, so the value is milliseconds per decoded token). Layers
the exported file writes as ``MatMulNBits`` are timed in that form."""
from __future__ import annotations

from qaev.search.objectives.base import Kind, Objective

__all__ = ["HostLatency", "OBJECTIVE"]


class HostLatency(Objective):
    """:func:`qaev.evaluation.latency.host_latency_ms` of the candidate's deployed model."""

    def value(self, candidate) -> float:
        from qaev.evaluation.latency import host_latency_ms

        return host_latency_ms(candidate.deployed(), candidate.host_feed(), level=candidate.ort_level)


OBJECTIVE = HostLatency(name="host_latency_ms", kind=Kind.MEASURED, unit="ms median on this host (ONNX Runtime)",
                        constraint="max_host_latency_ms", help="latency measured on this machine at most",
                        needs_model=True, quiet=True)
