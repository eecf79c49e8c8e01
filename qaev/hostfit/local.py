"""The ``host`` table fitted on this machine (``qaev hardware fit-host``).

The shipped ``host`` table's rates were measured on another machine. This times random
per-layer configs of a model with ONNX Runtime here (:func:`qaev.hostfit.refit.whole_model`),
refits the MAC rates, bandwidth and conversion times the timings can identify, and writes a
table file: each fitted figure's ``source`` names the command, the machine and the fit; each
figure the fit kept says it is the shipped table's, from another machine.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
from importlib import resources

import yaml

from qaev.documents import parse_document

__all__ = ["fit_host", "host_document", "dump", "TIED"]

#: Native pairs fitted with one shared rate, as for the shipped table: an int8 or int16
#: weight beside float activations is dequantized and the op runs as float.
TIED = ("w8afloat=wfloatafloat", "w16afloat=wfloatafloat")
_SHIPPED = "shipped host table, measured on another machine (not identifiable from these timings): "
_SHIPPED_ENERGY = "shipped host table (energies are not timed): "


def fit_host(*, problem: str = "efficientnet-lite0", model: str | None = None, configs: int = 40, repeats: int = 10,
             threads: int = 1, seed: int = 1, command: str = "qaev hardware fit-host") -> dict:
    """Time ``configs`` random mixes of a model here and refit the ``host`` table.

    Args:
        problem: ``efficientnet-lite0`` (falls back to ``digits`` when unavailable) or ``digits``.
        model: an ONNX file instead of the problem's model.
        configs: random per-layer configs to time.
        repeats: interleaved timing rounds per config (the median is kept).
        threads: ONNX Runtime intra-op threads.
        seed: seed of the configs (disjoint from the fidelity benchmark's set).
        command: the command line, recorded in the fitted figures' sources.

    Returns:
        :func:`~qaev.hostfit.refit.whole_model`'s result: the fitted fields, the kept ones,
        the fit's relative RMS, rank correlations before and after, one row per config.
    """
    from qaev.hostfit.refit import whole_model

    args = argparse.Namespace(problem=problem, model=model, configs=configs, repeats=repeats, threads=threads,
                              seed=seed, exclude_seed=0, exclude_configs=24, batch=1, graph="export",
                              table="host", tie=list(TIED), measurements=None, command=command)
    return whole_model(args)


def _machine() -> str:
    return f"{platform.machine()} {platform.processor()}".strip() + f", {os.cpu_count()} CPUs"


def host_document(result: dict, *, name: str) -> dict:
    """The shipped ``host`` table as a YAML document, with ``result``'s fitted figures.

    Args:
        result: :func:`fit_host`'s result.
        name: the new table's name.
    """
    text = resources.files("qaev.hardware").joinpath("host.yaml").read_text(encoding="utf-8")
    doc = parse_document(text, where="host.yaml")
    when = datetime.date.today().isoformat()
    fit = (f"fitted on this machine on {when}: {result['command']} ({result['configs']} configs of "
           f"{result['model']}, ONNX Runtime {result['onnxruntime']}, {result['threads']} thread(s); fit relative "
           f"RMS {100 * result['relative_rms']:.0f} %)")
    quantities = [(f"peak_macs_per_s.{pair}", q) for pair, q in doc["peak_macs_per_s"].items()]
    quantities += [(f"energy_per_mac.{pair}", q) for pair, q in doc["energy_per_mac"].items()]
    quantities += [(field, q) for field, q in doc.items() if isinstance(q, dict) and "value" in q]
    for key, quantity in quantities:
        value = result["fitted"].get(key)
        if value is not None:
            quantity.update(value=float(f"{value:.3g}"), source=f"{fit} -> {value:.3g}")
        else:
            quantity["source"] = (_SHIPPED_ENERGY if "energy" in key else _SHIPPED) + quantity["source"]
    doc.update(name=name, device=_machine(), description=(
        f"The host table refitted on this machine ({when}) by `{result['command']}`: ONNX Runtime's CPU execution "
        f"provider, {result['threads']} intra-op thread(s), running exported models. The fitted MAC rates and "
        "times are effective figures from whole-model latencies, so they include the ops that are not layers. "
        "The figures the timings could not identify keep the shipped table's values, measured on another "
        "machine; energies are not measured."))
    return doc


def dump(doc: dict) -> str:
    """``doc`` as YAML text, in the shipped table's key order."""
    return yaml.safe_dump(doc, sort_keys=False, width=120, allow_unicode=True)
