"""Train the small LLaMA-architecture decoder on the pydocs text and write its weights.

Run from the repository root (about 35 minutes on 2 CPU cores; the shipped run)::

    python problems/train_llama.py --out problems/assets/llama-pydocs --minutes 30 --lr 3e-3 --seed 0

It trains a 4096-token byte-level BPE on ``train.txt`` (or reuses ``tokenizer.json`` with
``--reuse-tokenizer``), then the model of :mod:`_llama_net` (LLaMA, Touvron et al. 2023)
on random windows of ``train.txt`` with AdamW and a warmup + cosine schedule, for
``--minutes`` of optimisation time (evaluations not counted; the schedule runs on the
fraction of that time used, or on steps with ``--steps``). Every ``--eval-minutes`` it
measures perplexity on ``valid.txt`` and keeps the best checkpoint. At the end the best
checkpoint, rounded to float16 as shipped, is measured on ``valid.txt`` and ``test.txt``.

Written to ``--out``: ``tokenizer.json``, ``weights.npz`` (float16 arrays named by the
state_dict keys), ``config.json`` (hyper-parameters, hashes, versions, results) and
``train_log.jsonl`` (one line per evaluation). Perplexity is per token of this tokenizer;
bits per byte is the summed negative log2-likelihood over the UTF-8 bytes the scored
tokens cover, which does not depend on the tokenizer. The data folder defaults to
``$QAEV_DATA/pydocs``, else ``shared/data/pydocs`` beside the repository.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import pathlib
import sys
import time
from dataclasses import dataclass

import numpy as np

_HERE = pathlib.Path(__file__).resolve().parent


def _load_net():
    """The sibling :mod:`_llama_net` module, loaded by path (works from any layout)."""
    spec = importlib.util.spec_from_file_location("_llama_net", _HERE / "_llama_net.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def sha256_file(path: pathlib.Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train_tokenizer(train_path: pathlib.Path, out_path: pathlib.Path, *, vocab: int = 4096):
    """Trains a byte-level BPE of ``vocab`` tokens on one file and saves it as JSON.

    No special tokens and no normaliser: every token is a byte string, and decoding the
    ids of a text gives the text back exactly.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=[], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train([str(train_path)], trainer)
    tokenizer.save(str(out_path))
    return tokenizer


def token_byte_lengths(tokenizer) -> np.ndarray:
    """UTF-8 bytes each token stands for (byte-level vocabulary: one symbol per byte)."""
    lengths = np.zeros(tokenizer.get_vocab_size(), dtype=np.int64)
    for token, index in tokenizer.get_vocab().items():
        lengths[index] = len(token)
    return lengths


def encode_file(tokenizer, path: pathlib.Path, lengths: np.ndarray) -> np.ndarray:
    """Token ids of a whole file, checked to cover exactly its bytes."""
    data = path.read_bytes()
    ids = np.asarray(tokenizer.encode(data.decode("utf-8")).ids, dtype=np.int64)
    if int(lengths[ids].sum()) != len(data):
        raise RuntimeError(f"{path}: tokens cover {lengths[ids].sum()} bytes, file has {len(data)}")
    return ids


@dataclass(frozen=True)
class Score:
    """Summed negative log-likelihood of a token stream and what it covers."""

    nll: float
    tokens: int
    bytes: int

    @property
    def ppl(self) -> float:
        """Perplexity per token."""
        return math.exp(self.nll / self.tokens)

    @property
    def bpb(self) -> float:
        """Bits per UTF-8 byte."""
        return self.nll / math.log(2) / self.bytes


def evaluate(model, ids: np.ndarray, lengths: np.ndarray, *, context: int, batch: int = 16) -> Score:
    """Scores every token but the first of ``ids``, in windows of ``context`` tokens.

    Window ``w`` reads tokens ``w*context .. w*context+context-1`` and predicts the next
    token at each position, so each token after the first is scored exactly once, with
    between 1 and ``context`` tokens of context (the windows do not overlap).
    """
    import torch

    full = (len(ids) - 1) // context
    groups = [[ids[w * context: w * context + context + 1] for w in range(first, min(first + batch, full))]
              for first in range(0, full, batch)]
    if len(ids) - 1 > full * context:
        groups.append([ids[full * context:]])  # the short last window goes alone
    model.eval()
    with torch.no_grad():
        nll = sum(_window_nll(model, rows) for rows in groups)
    targets = ids[1:]
    return Score(nll=nll, tokens=len(targets), bytes=int(lengths[targets].sum()))


def _window_nll(model, rows: list[np.ndarray]) -> float:
    """Summed next-token NLL of equal-length windows (each row: inputs plus one target)."""
    import torch

    inputs, targets = _split_windows(torch.from_numpy(np.stack(rows)))
    logits = model(*inputs).float()
    return float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum"))


def _split_windows(windows):
    """``(input_ids, attention_mask, position_ids)`` and targets of token windows [B, T+1]."""
    import torch

    inputs, targets = windows[:, :-1], windows[:, 1:]
    positions = torch.arange(inputs.shape[1]).expand(*inputs.shape)
    return (inputs, torch.ones_like(inputs), positions), targets


@dataclass(frozen=True)
class TrainOptions:
    """How the model is optimised (the shipped run: ``minutes=30, lr=3e-3``, the rest default)."""

    minutes: float
    seed: int = 0
    batch: int = 16
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    clip: float = 1.0
    eval_minutes: float = 4.0
    steps: int | None = None
    precision: str = "auto"
    threads: int = 2


def lr_factor(step: int, progress: float, opts: TrainOptions) -> float:
    """Linear warmup over ``warmup_steps``, then cosine from 1 to ``min_lr_ratio`` over ``progress``."""
    if step < opts.warmup_steps:
        return (step + 1) / opts.warmup_steps
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return opts.min_lr_ratio + (1.0 - opts.min_lr_ratio) * cosine


def make_optimizer(model, opts: TrainOptions):
    """AdamW (betas 0.9/0.95 as in LLaMA), weight decay on matrices only (not norm gains)."""
    import torch

    groups = [{"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": opts.weight_decay},
              {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=opts.lr, betas=(0.9, 0.95), eps=1e-8)


def autocast_dtype(precision: str):
    """bfloat16 autocast where asked (``auto``: where oneDNN has native bf16), else None."""
    import torch

    native = precision == "auto" and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return torch.bfloat16 if precision == "bf16" or native else None


def train_step(model, optimizer, windows, *, dtype, clip: float) -> float:
    """One AdamW step on a batch of token windows [B, T+1]; returns the mean loss."""
    import torch

    inputs, targets = _split_windows(windows)
    model.train()
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        logits = model(*inputs)
    loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return float(loss.detach())


def save_weights(state: dict, path: pathlib.Path) -> None:
    """Writes the state_dict as float16 arrays (atomically: temporary name, then rename)."""
    partial = path.with_name(path.stem + ".partial.npz")
    np.savez(partial, **{k: v.detach().to("cpu").float().numpy().astype(np.float16) for k, v in state.items()})
    os.replace(partial, path)


def write_json(payload: dict, path: pathlib.Path) -> None:
    """Writes indented JSON atomically."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(payload, indent=1) + "\n")
    os.replace(partial, path)


def run_training(model, train_ids: np.ndarray, valid: tuple, opts: TrainOptions, *, on_best,
                 log_path: pathlib.Path) -> dict:
    """Optimises ``model`` for the time (or step) budget, evaluating on ``valid``.

    Args:
        model: The freshly initialised model.
        train_ids: Token ids of the training text.
        valid: ``(ids, byte_lengths)`` of the validation text.
        opts: Options.
        on_best: Called with ``(state_dict_copy, summary)`` at each new best valid perplexity.
        log_path: ``train_log.jsonl``, one line appended per evaluation.

    Returns:
        Summary: steps, tokens seen, optimisation and evaluation seconds, best step and ppl.
    """
    import torch

    context = model.config.context
    data = torch.from_numpy(train_ids)
    offsets = torch.arange(context + 1)
    generator = torch.Generator().manual_seed(opts.seed)
    optimizer, dtype = make_optimizer(model, opts), autocast_dtype(opts.precision)
    budget, every = opts.minutes * 60.0, opts.eval_minutes * 60.0
    state = {"step": 0, "tokens": 0, "train_s": 0.0, "eval_s": 0.0, "best_ppl": math.inf,
             "best_step": 0, "losses": [], "next_eval": every, "precision": str(dtype or "float32")}
    log_path.write_text("")
    start = time.perf_counter()
    while True:
        progress = state["step"] / opts.steps if opts.steps else state["train_s"] / budget
        done = progress >= 1.0
        if done or state["train_s"] >= state["next_eval"]:
            _evaluate_and_log(model, valid, state, on_best=on_best, log_path=log_path, wall=time.perf_counter() - start)
            state["next_eval"] = state["train_s"] + every
        if done:
            return {k: v for k, v in state.items() if k not in ("losses", "next_eval")}
        for group in optimizer.param_groups:
            group["lr"] = opts.lr * lr_factor(state["step"], progress, opts)
        tick = time.perf_counter()
        starts = torch.randint(0, len(data) - context - 1, (opts.batch,), generator=generator)
        loss = train_step(model, optimizer, data[starts[:, None] + offsets], dtype=dtype, clip=opts.clip)
        state["train_s"] += time.perf_counter() - tick
        state["step"] += 1
        state["tokens"] += opts.batch * context
        state["losses"].append(loss)
        if state["step"] % 50 == 0:
            print(f"step {state['step']:5d}  loss {loss:.3f}  lr {optimizer.param_groups[0]['lr']:.2e}  "
                  f"{state['tokens'] / state['train_s']:.0f} tok/s  {progress:5.1%}", flush=True)


def _evaluate_and_log(model, valid: tuple, state: dict, *, on_best, log_path: pathlib.Path, wall: float) -> None:
    tick = time.perf_counter()
    score = evaluate(model, valid[0], valid[1], context=model.config.context)
    state["eval_s"] += time.perf_counter() - tick
    losses = state["losses"]
    record = {"step": state["step"], "tokens": state["tokens"], "elapsed_s": round(wall, 1),
              "train_s": round(state["train_s"], 1),
              "train_loss": round(sum(losses) / len(losses), 4) if losses else None,
              "valid_ppl": round(score.ppl, 4), "valid_bpb": round(score.bpb, 4)}
    losses.clear()
    with log_path.open("a") as fh:
        fh.write(json.dumps(record) + "\n")
    print(f"eval  {json.dumps(record)}", flush=True)
    if score.ppl < state["best_ppl"]:
        state["best_ppl"], state["best_step"] = score.ppl, state["step"]
        on_best({k: v.detach().clone() for k, v in model.state_dict().items()}, record)


def default_data_dir() -> pathlib.Path:
    """``$QAEV_DATA/pydocs``, else ``shared/data/pydocs`` beside the repository."""
    if os.environ.get("QAEV_DATA"):
        return pathlib.Path(os.environ["QAEV_DATA"]) / "pydocs"
    return _HERE.parent.parent / "shared" / "data" / "pydocs"


def _versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "tokenizers", "numpy")} | {"python": sys.version.split()[0]}


def _prepare(args) -> tuple:
    """Tokenizer (trained or reused) and the token ids and byte lengths of the three splits."""
    from tokenizers import Tokenizer

    tok_path = args.out / "tokenizer.json"
    tick = time.perf_counter()
    reuse = args.reuse_tokenizer
    tokenizer = Tokenizer.from_file(str(tok_path)) if reuse else train_tokenizer(args.data / "train.txt", tok_path)
    lengths = token_byte_lengths(tokenizer)
    splits = {name: encode_file(tokenizer, args.data / f"{name}.txt", lengths) for name in ("train", "valid", "test")}
    print(f"tokenizer + encoding {time.perf_counter() - tick:.1f}s; tokens "
          + ", ".join(f"{k} {len(v)}" for k, v in splits.items()), flush=True)
    return tok_path, lengths, splits


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, required=True, help="output folder")
    parser.add_argument("--minutes", type=float, required=True, help="optimisation time budget")
    parser.add_argument("--data", type=pathlib.Path, default=default_data_dir(), help="pydocs folder")
    parser.add_argument("--reuse-tokenizer", action="store_true", help="load OUT/tokenizer.json")
    parser.add_argument("--steps", type=int, default=None, help="schedule on steps, not time")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    for flag, kind, default in (("--seed", int, 0), ("--batch", int, 16), ("--lr", float, 2e-3),
                                ("--eval-minutes", float, 4.0), ("--threads", int, 2)):
        parser.add_argument(flag, type=kind, default=default)
    return parser.parse_args(argv)


def _provenance(args, opts: TrainOptions, model, tok_path: pathlib.Path, splits: dict, argv) -> dict:
    """The ``config.json`` fields known before training."""
    files = {name: args.data / f"{name}.txt" for name in splits}
    return {
        "model": "LLaMA-architecture decoder (problems/_llama_net.py)", "architecture": model.config.to_dict(),
        "parameters": sum(p.numel() for p in model.parameters()), "weights": "weights.npz (float16)",
        "tokenizer": "tokenizer.json (byte-level BPE, trained on train.txt)",
        "tokenizer_sha256": sha256_file(tok_path),
        "data": {name: {"sha256": sha256_file(files[name]), "tokens": len(ids),
                        "bytes": files[name].stat().st_size} for name, ids in splits.items()},
        "command": "python problems/train_llama.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "options": dict(vars(opts)), "seed": args.seed, "minutes": args.minutes,
        "versions": _versions(), "status": "training",
    }


def _finish(model, best_state: dict, splits: dict, lengths: np.ndarray, summary: dict, record: dict) -> None:
    """Measures the best checkpoint, rounded to float16 as shipped, on valid and test."""
    model.load_state_dict({k: v.half().float() for k, v in best_state.items()})
    record.update(status="done", tokens_seen=summary["tokens"], steps=summary["step"],
                  train_seconds=round(summary["train_s"], 1), eval_seconds=round(summary["eval_s"], 1),
                  precision=summary["precision"], best_step=summary["best_step"],
                  best_valid_ppl=round(summary["best_ppl"], 4))
    for name in ("valid", "test"):
        score = evaluate(model, splits[name], lengths, context=model.config.context)
        record[f"{name}_ppl"], record[f"{name}_bpb"] = round(score.ppl, 4), round(score.bpb, 4)
        record[f"{name}_scored"] = {"tokens": score.tokens, "bytes": score.bytes}
    record["measured"] = "torch, float32 compute, the float16 weights of weights.npz"


def main(argv: list[str] | None = None) -> int:
    """Trains and writes the model files; returns the exit status."""
    args = _parse(argv)
    # Sleeping, not spinning, OpenMP workers: on a shared 2-core machine spinning threads
    # made training 2-3x slower whenever another process ran (measured).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    wall = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    opts = TrainOptions(minutes=args.minutes, seed=args.seed, batch=args.batch, lr=args.lr, steps=args.steps,
                        eval_minutes=args.eval_minutes, precision=args.precision, threads=args.threads)
    tok_path, lengths, splits = _prepare(args)
    net = _load_net()
    model = net.LlamaLM(net.LlamaConfig(vocab=len(lengths)))
    model.init_weights()
    record = _provenance(args, opts, model, tok_path, splits, argv)
    best_state: dict = {}

    def on_best(state: dict, summary: dict) -> None:
        save_weights(state, args.out / "weights.npz")
        record.update(best=summary)
        write_json(record, args.out / "config.json")
        best_state.clear()
        best_state.update(state)

    summary = run_training(model, splits["train"], (splits["valid"], lengths), opts, on_best=on_best,
                           log_path=args.out / "train_log.jsonl")
    _finish(model, best_state, splits, lengths, summary, record)
    record["wall_seconds"] = round(time.perf_counter() - wall, 1)
    write_json(record, args.out / "config.json")
    print(json.dumps({k: record[k] for k in ("best_valid_ppl", "valid_ppl", "test_ppl", "test_bpb",
                                             "tokens_seen", "wall_seconds")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
