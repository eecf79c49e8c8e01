"""Where a search's sensitivity-seeded first population comes from (``qaev search --sensitivity``).

Two sources, both giving ``[searchable layer, w_bits index]`` -> harm (larger = worse):

- ``noise`` or ``noise:N``: every layer probed alone at every lower width on the first N
  (default 32) evaluation samples, the output noise power measured (no labels read;
  :func:`qaev.operators.sensitivity_proxy.output_noise_table`);
- a path to a table written by ``qaev sensitivity --out`` (measured metric drops).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from qaev.errors import ConfigError

__all__ = ["load_sensitivity", "sensitivity_settings", "DEFAULT_NOISE_SAMPLES", "INFORMED_SHARE"]

#: Samples per noise probe when ``noise`` names no count.
DEFAULT_NOISE_SAMPLES = 32
#: Share of the first population seeded along the lowering path when a sensitivity is given.
INFORMED_SHARE = 0.5


def _noise_samples(spec: str) -> int | None:
    if spec == "noise":
        return DEFAULT_NOISE_SAMPLES
    if not spec.startswith("noise:"):
        return None
    try:
        n = int(spec.split(":", 1)[1])
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"--sensitivity: {spec!r}: expected noise:N with N a positive number of samples")
    return n


def _read(spec: str) -> bytes:
    try:
        return Path(spec).read_bytes()
    except OSError as exc:
        raise ConfigError(f"--sensitivity: cannot read {spec} ({exc.strerror or exc}); give a file written by "
                          "`qaev sensitivity --out`, or noise[:N]") from None


def sensitivity_settings(spec: str) -> dict:
    """What a run records of ``spec`` in its settings (a resume must seed the same way);
    checks ``spec`` before any model is loaded.

    Raises:
        ConfigError: a bad ``noise:N`` or an unreadable file.
    """
    samples = _noise_samples(spec)
    if samples is not None:
        return {"noise_samples": samples}
    return {"file_sha256": hashlib.sha256(_read(spec)).hexdigest()}


def load_sensitivity(problem, spec: str, *, progress=None) -> np.ndarray:
    """The harm table ``spec`` names, for ``problem``'s searchable layers and widths.

    Args:
        problem: the :class:`~qaev.problem.QuantizationProblem` to seed.
        spec: ``noise``, ``noise:N``, or a ``qaev sensitivity --out`` JSON file.
        progress: called with (done, total) after each noise probe.

    Raises:
        ConfigError: an unreadable or foreign file (another model, no searchable layer in
            common), or a bad ``noise:N``.
    """
    from qaev.operators.sensitivity_proxy import output_noise_table
    from qaev.sensitivity import SensitivityTable

    samples = _noise_samples(spec)
    if samples is not None:
        return output_noise_table(problem, samples=samples, progress=progress)
    try:
        table = SensitivityTable.from_json(_read(spec).decode("utf-8", errors="replace"))
    except ConfigError as exc:
        raise ConfigError(f"--sensitivity: {spec}: {exc}") from None
    sha = problem.quantizer.model.sha256
    if table.model_sha256 and sha and table.model_sha256 != sha:
        raise ConfigError(f"--sensitivity: {spec} was measured on another model (sha256 {table.model_sha256[:12]}, "
                          f"this one {sha[:12]})")
    names = [layer.name for layer in problem.space.searchable]
    if not set(names) & set(table.layers):
        raise ConfigError(f"--sensitivity: {spec} probes none of the {len(names)} searchable layers "
                          f"(it has {', '.join(table.layers[:3])}{' ...' if len(table.layers) > 3 else ''})")
    return table.matrix(problem.space.w_bits, layers=names)
