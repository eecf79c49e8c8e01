"""The summary of ``benchmarks/learned_rounding.py``'s results: mean drops per variant, paired differences, machines."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from qaev.quantize.learned.reconstruct import ReconstructOptions


def variant_of(row: dict) -> str:
    """A row's variant: its ``label`` (from ``--summary LABEL=FILE``), else its method and
    the learning options it ran with where they are not the defaults."""
    if row.get("label"):
        return row["label"]
    data = (["mirror"] if row.get("mirror") else []) + (["ends8"] if row.get("ends_8bit") else [])
    if not row["method"].startswith("block"):  # the learning options name block reconstruction's variants only
        return "/".join([row["method"], *data])
    defaults = ReconstructOptions()
    tags = [row.get("output_loss", "mse")] if row.get("output_loss", "mse") != "mse" else []
    tags += [f"start={row['start']}"] if row.get("start", defaults.start) != defaults.start else []
    tags += [f"reg={row['reg_weight']:g}"] if row.get("reg_weight", defaults.reg_weight) != defaults.reg_weight else []
    tags += ["scale"] if row.get("learn_scale", defaults.learn_scale) != defaults.learn_scale else []
    tags += [f"mix={row['mix']:g}"] if row.get("mix", defaults.mix) != defaults.mix else []
    tags += [f"layers={row['max_layers']}"] if row.get("max_layers", defaults.max_layers) != defaults.max_layers else []
    tags += [f"anchor={row['anchor']:g}"] if row.get("anchor", defaults.anchor) != defaults.anchor else []
    tags += [f"holdout={row['holdout']:g}"] if row.get("holdout") else []
    tags += [f"target={row['target']}"] if row.get("target", "float") != "float" else []
    tags += [f"learn-seed={row['learn_seed']}"] if row.get("learn_seed") is not None else []
    return "/".join([row["method"], *tags, *data])


def _paired(rows: list[dict], act: str, a: str, b: str, field: str = "items") -> dict[int, np.ndarray]:
    """Per seed, variant ``b``'s per-item drops (or another per-item ``field``) minus
    ``a``'s (seeds where both have them)."""
    by_seed: dict = {}
    for r in rows:
        if r["acts"] == act and r.get(field) and variant_of(r) in (a, b):
            by_seed.setdefault(r["seed"], {})[variant_of(r)] = np.array(r[field])
    return {seed: v[b] - v[a] for seed, v in sorted(by_seed.items()) if len(v) == 2 and len(v[a]) == len(v[b])}


def _mean_se(parts: list[np.ndarray]) -> tuple[float, float]:
    """Mean over seeds of each seed's mean, with the combined standard error."""
    return (float(np.mean([d.mean() for d in parts])),
            float(np.sqrt(sum(d.var() / len(d) for d in parts))) / len(parts))


def _variant_pairs(rows: list[dict]):
    keys = list(dict.fromkeys((r["acts"], variant_of(r)) for r in rows))
    return keys, [(act, a, b) for i, (act, a) in enumerate(keys) for act_b, b in keys[i + 1:] if act_b == act]


def summary(rows: list[dict]) -> None:
    """Mean drop over seeds per (acts, method), with the combined paired standard error (and
    the mean per-item NLL and KL of :func:`learned_rounding.class_score_losses`, in millinats, where the rows
    carry them); then, for two variants measured with per-item drops on the same seeds, their
    mean difference with its paired standard error (the same evaluation items for both), and
    the same for the NLL and KL."""
    print(f"{'acts':5s} {'method':16s} {'seeds':>5s} {'mean drop':>10s} {'se':>5s} {'fit min':>8s}"
          f" {'NLL mnat':>9s} {'KL mnat':>8s}")
    keys, pairs = _variant_pairs(rows)
    for act, variant in keys:
        sel = [r for r in rows if r["acts"] == act and variant_of(r) == variant]
        mean = float(np.mean([r["drop"] for r in sel]))
        se = float(np.sqrt(sum(r["se"] ** 2 for r in sel))) / len(sel)
        minutes = np.mean([r["fit_min"] for r in sel])
        losses = "".join(f" {1000 * np.mean([np.mean(r[f]) for r in sel]):{w}.1f}" if all(r.get(f) for r in sel)
                         else f" {'':>{w}s}" for f, w in (("nll_items", 9), ("kl_items", 8)))
        print(f"{act:5s} {variant:16s} {len(sel):5d} {mean:+10.2f} {se:5.2f} {minutes:8.1f}{losses}")
    for act, a, b in pairs:
        diffs = list(_paired(rows, act, a, b).values())
        if diffs:
            mean, se = _mean_se(diffs)
            print(f"{act:5s} {b} - {a}: {mean:+.2f} +-{se:.2f} paired, {len(diffs)} seed(s) "
                  f"({', '.join(f'{d.mean():+.2f}' for d in diffs)}); items {b} gets wrong / right where {a} "
                  f"does not, per seed: {', '.join(f'{(d > 0).sum()}/{(d < 0).sum()}' for d in diffs)}")
        for field, unit in (("nll_items", "true-class NLL"), ("kl_items", "KL from float")):
            diffs = list(_paired(rows, act, a, b, field).values())
            if diffs:
                mean, se = _mean_se([1000 * d for d in diffs])
                print(f"{act:5s} {b} - {a}: {unit} {mean:+.1f} +-{se:.1f} millinats paired, {len(diffs)} seed(s) "
                      f"({', '.join(f'{1000 * d.mean():+.1f}' for d in diffs)}); lower on "
                      f"{', '.join(f'{(d < 0).mean():.0%}' for d in diffs)} of the items")
    print(machines_line(rows))


def machines_line(rows: list[dict]) -> str:
    """Which machines and library versions the rows were measured with (a learned result
    moves with the floating-point kernels it ran on), rows that did not record it counted."""
    seen: dict[str, int] = {}
    for r in rows:
        m = r.get("machine")
        name = ("not recorded" if m is None else
                f"{m['cpu']}, torch {m['torch']} ({m.get('torch_cpu', '?')}), onnxruntime {m['onnxruntime']}")
        seen[name] = seen.get(name, 0) + 1
    return "measured on: " + "; ".join(f"{name} ({n} row{'s' if n > 1 else ''})" for name, n in seen.items())


def halves(rows: list[dict]) -> None:
    """Choose on one half, report on the other: each paired difference of :func:`summary`
    on a seeded half of every seed's evaluation items (the half to choose a variant on) and
    on the other half (the half to report the choice on)."""
    for act, a, b in _variant_pairs(rows)[1]:
        diffs = _paired(rows, act, a, b)
        if not diffs:
            continue
        cut = {seed: np.random.default_rng(1000 + seed).permutation(len(d)) for seed, d in diffs.items()}
        choose = _mean_se([d[cut[s][:len(d) // 2]] for s, d in diffs.items()])
        report = _mean_se([d[cut[s][len(d) // 2:]] for s, d in diffs.items()])
        print(f"{act:5s} {b} - {a}: choosing half {choose[0]:+.2f} +-{choose[1]:.2f}, "
              f"reporting half {report[0]:+.2f} +-{report[1]:.2f}, {len(diffs)} seed(s)")


def read_rows(specs: list[str]) -> list[dict]:
    """JSON lines of ``--json`` files, each given as FILE or LABEL=FILE (the label names
    the file's rows' variant, for rows written before they recorded their options)."""
    rows = []
    for spec in specs:
        label, _, path = spec.rpartition("=")  # no "=": ("", "", spec)
        for line in Path(path).read_text().splitlines():
            if line.strip():
                rows.append(json.loads(line) | ({"label": label} if label else {}))
    return rows
