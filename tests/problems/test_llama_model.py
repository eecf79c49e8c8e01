"""The small LLaMA decoder (problems/_llama_net.py) and its ONNX exports (problems/_llama_export.py).

A tiny randomly initialised config: no training and no shipped weights are needed.
Padding: both right padding and left padding (with ``position_ids`` counting real
tokens) leave the logits of the real tokens unchanged; both are tested.
"""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from qaev.problems._llama_net import LlamaConfig, LlamaLM, apply_rope, rope_angles  # noqa: E402 - needs torch

TINY = LlamaConfig(vocab=64, d_model=32, layers=2, heads=4, kv_heads=2, ffn_hidden=48, context=32)


def _model(seed: int = 0) -> LlamaLM:
    torch.manual_seed(seed)
    model = LlamaLM(TINY)
    model.init_weights(std=0.2)  # large enough that every token visibly moves the logits
    return model.eval()


def _inputs(batch: int, length: int, *, seed: int = 1):
    ids = torch.randint(0, TINY.vocab, (batch, length), generator=torch.Generator().manual_seed(seed))
    return ids, torch.ones_like(ids), torch.arange(length).expand(batch, length).contiguous()


def _logits(model, ids, mask, positions, past=None):
    with torch.no_grad():
        return model(ids, mask, positions, past)


def test_config_and_parameters():
    model = _model()
    assert model.lm_head.weight.data_ptr() != model.embed_tokens.weight.data_ptr()  # untied
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Linear))
    per_layer = 2 * 32 + 32 * 32 * 2 + 2 * 32 * 16 + 3 * 32 * 48  # norms, q/o, k/v (2 heads of 8), SwiGLU
    assert sum(p.numel() for p in model.parameters()) == 2 * 64 * 32 + 32 + TINY.layers * per_layer
    assert "inv_freq" not in model.state_dict()
    with pytest.raises(ValueError):
        LlamaConfig(d_model=32, heads=4, kv_heads=3)
    shipped = LlamaConfig()
    assert 4.9e6 < sum(p.numel() for p in LlamaLM(shipped).parameters()) < 5.1e6


def test_rope_shapes_and_relative_positions():
    positions = torch.tensor([[0, 1, 2], [5, 6, 7]])
    cos, sin = rope_angles(positions, _model().inv_freq)
    assert cos.shape == sin.shape == (2, 1, 3, TINY.head_dim)
    q, k = torch.randn(1, 1, 1, TINY.head_dim), torch.randn(1, 1, 1, TINY.head_dim)

    def score(m: int, n: int) -> float:
        (cq, sq), (ck, sk) = (rope_angles(torch.tensor([[p]]), _model().inv_freq) for p in (m, n))
        return float((apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum())

    assert score(7, 3) == pytest.approx(score(20, 16), abs=1e-5)  # depends on m - n only (RoFormer)
    assert score(7, 3) != pytest.approx(score(7, 4), abs=1e-3)
    rotated = apply_rope(q, *rope_angles(torch.tensor([[11]]), _model().inv_freq))
    assert float(rotated.norm()) == pytest.approx(float(q.norm()), rel=1e-5)  # a rotation


def test_gqa_shapes_with_cache():
    model = _model()
    ids, mask, positions = _inputs(2, 5)
    past = [(torch.randn(2, TINY.kv_heads, 3, TINY.head_dim),) * 2 for _ in range(TINY.layers)]
    logits, present = _logits(model, ids, torch.ones(2, 8, dtype=torch.int64), positions + 3, past)
    assert logits.shape == (2, 5, TINY.vocab)
    assert len(present) == TINY.layers
    assert all(t.shape == (2, TINY.kv_heads, 8, TINY.head_dim) for pair in present for t in pair)
    assert _logits(model, ids, mask, positions).shape == (2, 5, TINY.vocab)


def test_causal_mask():
    model = _model()
    ids, mask, positions = _inputs(1, 12)
    changed = ids.clone()
    changed[0, 7] = (changed[0, 7] + 1) % TINY.vocab
    before, after = _logits(model, ids, mask, positions), _logits(model, changed, mask, positions)
    torch.testing.assert_close(before[:, :7], after[:, :7], atol=1e-5, rtol=0)
    assert (before[:, 7:] - after[:, 7:]).abs().amax(dim=-1).min() > 1e-4


def test_torch_cache_matches_full_sequence():
    model = _model()
    ids, mask, positions = _inputs(2, 9)
    full = _logits(model, ids, mask, positions)
    empty = [(torch.zeros(2, TINY.kv_heads, 0, TINY.head_dim),) * 2 for _ in range(TINY.layers)]
    logits, past = _logits(model, ids[:, :6], mask[:, :6], positions[:, :6], empty)
    torch.testing.assert_close(logits, full[:, :6], atol=1e-5, rtol=0)
    for t in range(6, 9):
        logits, past = _logits(model, ids[:, t:t + 1], mask[:, :t + 1], positions[:, t:t + 1], past)
        torch.testing.assert_close(logits[:, 0], full[:, t], atol=1e-5, rtol=0)


@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_leaves_real_tokens_unchanged(side):
    model = _model()
    ids, _, _ = _inputs(2, 10)
    real = 6  # row 1 keeps 6 real tokens, padded with 4 positions of junk id 3
    alone = _logits(model, ids[1:, :real], torch.ones(1, real, dtype=torch.int64), torch.arange(real)[None])
    padded, mask = ids.clone(), torch.ones_like(ids)
    keep = slice(0, real) if side == "right" else slice(10 - real, 10)
    pad = slice(real, 10) if side == "right" else slice(0, 10 - real)
    padded[1, keep], padded[1, pad], mask[1, pad] = ids[1, :real], 3, 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # equals arange for unpadded rows
    logits = _logits(model, padded, mask, positions)
    torch.testing.assert_close(logits[1:, keep], alone, atol=1e-5, rtol=0)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits[:1], _logits(model, ids[:1], mask[:1], positions[:1]), atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Both ONNX graphs of the tiny model, built from a weights.npz + config.json pair."""
    pytest.importorskip("onnxscript")  # torch.onnx.export(dynamo=True) needs it
    pytest.importorskip("onnxruntime")
    from qaev.problems import _llama_export as lx

    folder = tmp_path_factory.mktemp("llama")
    state = _model().state_dict()
    np.savez(folder / "weights.npz", **{k: v.numpy().astype(np.float16) for k, v in state.items()})
    (folder / "config.json").write_text(json.dumps({"architecture": TINY.to_dict()}))
    model = lx.load_llama(folder / "weights.npz", folder / "config.json")
    full = lx.export_full(model, folder / "full.onnx")
    cached = lx.export_cached(model, folder / "cached.onnx")
    return lx, model, full, cached


def test_onnx_graph_layers(exported):
    import onnx

    lx, _, full, cached = exported
    for path in (full, cached):
        graph = onnx.load(str(path)).graph
        inits = {t.name for t in graph.initializer}
        weighted = [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in inits]
        assert len(weighted) == 7 * TINY.layers + 1  # q k v o gate up down per layer, LM head
        assert "lm_head.weight" in {n.input[1] for n in weighted}
        gathers = [n for n in graph.node if n.op_type == "Gather" and n.input[0] in inits]
        assert [n.input[0] for n in gathers] == ["embed_tokens.weight"]
        assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer)
    names = [i.name for i in onnx.load(str(cached)).graph.input]
    assert names[:3] == list(lx.INPUTS) and names[3:] == lx.cache_names(TINY.layers)[0]


def test_onnx_full_sequence_matches_torch(exported):
    lx, model, full, _ = exported
    session = lx.ort_session(full)
    for batch, length in ((1, 1), (3, 17)):
        ids, mask, positions = _inputs(batch, length, seed=length)
        feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "position_ids": positions.numpy()}
        (logits,) = session.run(["logits"], feed)
        assert logits.dtype == np.float32 and logits.shape == (batch, length, TINY.vocab)
        np.testing.assert_allclose(logits, _logits(model, ids, mask, positions).numpy(), atol=1e-4, rtol=0)


def test_onnx_cache_decoding_matches_full_sequence(exported):
    lx, _, full, cached = exported
    ids, mask, positions = _inputs(2, 10, seed=3)
    feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "position_ids": positions.numpy()}
    (reference,) = lx.ort_session(full).run(["logits"], feed)
    session = lx.ort_session(cached)
    past_names, present_names = lx.cache_names(TINY.layers)
    past = lx.empty_past(TINY, batch=2)  # the first call: past length 0
    for start, stop in [(0, 6), (6, 7), (7, 8), (8, 9), (9, 10)]:
        step = {k: v[:, start:stop] for k, v in feed.items() if k != "attention_mask"}
        step["attention_mask"] = feed["attention_mask"][:, :stop]
        outputs = session.run(["logits", *present_names], {**step, **dict(zip(past_names, past))})
        past = outputs[1:]
        assert past[0].shape == (2, TINY.kv_heads, stop, TINY.head_dim)
        np.testing.assert_allclose(outputs[0][:, -1], reference[:, stop - 1], atol=1e-4, rtol=0)


def test_greedy_decoding_with_the_cache_matches_the_full_graph(exported):
    from qaev.evaluation.decode import decode_feed, generate

    lx, _, full, cached = exported
    session, whole = lx.ort_session(cached), lx.ort_session(full)
    prompt = _inputs(1, 7, seed=5)[0].numpy()
    run = generate(session, prompt, 5)
    ids = prompt
    for _ in range(5):  # the same tokens, re-running the whole sequence each time
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids),
                "position_ids": np.arange(ids.shape[1])[None].astype(np.int64)}
        (logits,) = whole.run(["logits"], feed)
        ids = np.concatenate([ids, logits[:, -1].argmax(-1)[:, None]], axis=1)
    np.testing.assert_array_equal(run.tokens, ids[:, 7:])
    assert run.tokens_per_s > 0 and run.prefill_s > 0
    step = decode_feed(session, prompt)
    assert step["input_ids"].shape == (1, 1) and step["attention_mask"].shape == (1, 8)
    assert int(step["position_ids"][0, 0]) == 7 and step["input_ids"][0, 0] == run.tokens[0, 0]
    assert step["past_key_values.0.key"].shape == (1, TINY.kv_heads, 7, TINY.head_dim)
