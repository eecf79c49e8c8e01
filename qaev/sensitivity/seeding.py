"""Where a search's sensitivity-seeded first population comes from (``qaev search --sensitivity``).

Two sources, both giving ``[searchable layer, w_bits index]`` -> harm (larger = worse):

- ``noise`` or ``noise:N``: every layer probed alone at every lower width on the first N
  (default 32) evaluation samples, the output noise power measured (no labels read;
  :func:`qaev.sensitivity.proxy.output_noise_table`);
- a path to a table written by ``qaev sensitivity --out`` (measured metric drops).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qaev.errors import ConfigError

__all__ = ["SensitivitySource", "load_sensitivity", "DEFAULT_NOISE_SAMPLES", "INFORMED_SHARE"]

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


@dataclass(frozen=True)
class SensitivitySource:
    """A parsed ``--sensitivity`` value: ``noise_samples`` for ``noise[:N]``, else the table
    file's bytes, read once (the run's settings hash the same bytes the search loads).

    Raises (from :meth:`parse`):
        ConfigError: a bad ``noise:N`` or an unreadable file.
    """

    spec: str
    noise_samples: int | None = None
    data: bytes | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, spec: str) -> SensitivitySource:
        """Checks ``spec`` (before any model is loaded) and reads its file, if it names one."""
        samples = _noise_samples(spec)
        if samples is not None:
            return cls(spec, noise_samples=samples)
        try:
            data = Path(spec).read_bytes()
        except OSError as exc:
            raise ConfigError(f"--sensitivity: cannot read {spec} ({exc.strerror or exc}); give a file written by "
                              "`qaev sensitivity --out`, or noise[:N]") from None
        return cls(spec, data=data)

    @property
    def settings(self) -> dict:
        """What a run records of the source (a resume must seed the same way)."""
        if self.noise_samples is not None:
            return {"noise_samples": self.noise_samples}
        return {"file_sha256": hashlib.sha256(self.data).hexdigest()}


def load_sensitivity(problem, source: SensitivitySource | str, *, progress=None) -> np.ndarray:
    """The harm table ``source`` names, for ``problem``'s searchable layers and widths.

    Args:
        problem: the :class:`~qaev.search.problem.QuantizationProblem` to seed.
        source: a :class:`SensitivitySource`, or its spec: ``noise``, ``noise:N``, or a
            ``qaev sensitivity --out`` JSON file.
        progress: called with (done, total) after each noise probe.

    Raises:
        ConfigError: an unreadable or foreign file (another model, no searchable layer in
            common), or a bad ``noise:N``.
    """
    from qaev.sensitivity.proxy import output_noise_table
    from qaev.sensitivity.probes import SensitivityTable

    if isinstance(source, str):
        source = SensitivitySource.parse(source)
    spec = source.spec
    if source.noise_samples is not None:
        return output_noise_table(problem, samples=source.noise_samples, progress=progress)
    try:
        table = SensitivityTable.from_json(source.data.decode("utf-8", errors="replace"))
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
