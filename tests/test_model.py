"""Hookpoint resolution, early-stopping forward and splicing on a tiny random Llama."""

import pytest
import torch

from autointerp.errors import HookpointError
from autointerp.model import resolve_hookpoint, run_to_hookpoint, splice


def test_tl_and_hf_names_resolve_to_same_module(tiny_model):
    m = tiny_model.model
    a = resolve_hookpoint(m, "blocks.2.hook_resid_post")
    b = resolve_hookpoint(m, "model.layers.2")
    assert a.module is b.module and a.io == b.io == "output" and a.width == 32
    h = resolve_hookpoint(m, "blocks.1.mlp.hook_post")
    h2 = resolve_hookpoint(m, "model.layers.1.mlp.down_proj:input")
    assert h.module is h2.module and h.io == "input" and h.width == h2.width == 64
    assert resolve_hookpoint(m, "blocks.0.hook_mlp_out").module is m.model.layers[0].mlp


@pytest.mark.parametrize("bad", ["blocks.9.hook_resid_post", "blocks.1.hook_foo", "model.nope"])
def test_bad_hookpoint_names_the_allowed_ones(tiny_model, bad):
    with pytest.raises(HookpointError) as e:
        resolve_hookpoint(tiny_model.model, bad)
    assert "blocks.L.hook_resid_post" in str(e.value) or "0..3" in str(e.value)


def test_run_to_hookpoint_stops_after_the_hooked_layer(tiny_model):
    sm = tiny_model
    calls = []
    hooks = [
        layer.register_forward_hook(lambda *_a, i=i: calls.append(i))
        for i, layer in enumerate(sm.layers)
    ]
    ids = torch.randint(3, 50, (2, 10))
    acts = run_to_hookpoint(sm, sm.hookpoint("blocks.1.hook_resid_post"), ids)
    for h in hooks:
        h.remove()
    assert calls == [0, 1]
    out = sm.model(input_ids=ids, output_hidden_states=True)
    torch.testing.assert_close(acts, out.hidden_states[2])  # hidden_states[0] = embeddings


def test_resid_pre_equals_previous_resid_post(tiny_model):
    sm = tiny_model
    ids = torch.randint(3, 50, (2, 7))
    pre = run_to_hookpoint(sm, sm.hookpoint("blocks.2.hook_resid_pre"), ids)
    post = run_to_hookpoint(sm, sm.hookpoint("blocks.1.hook_resid_post"), ids)
    torch.testing.assert_close(pre, post)


def test_splice_identity_keeps_logits_and_zero_changes_them(tiny_model):
    sm = tiny_model
    ids = torch.randint(3, 50, (2, 9))
    clean = sm.model(input_ids=ids).logits
    for name in ("blocks.1.hook_resid_post", "blocks.1.mlp.hook_post"):
        hp = sm.hookpoint(name)
        with splice(hp, lambda x: x):
            same = sm.model(input_ids=ids).logits
        with splice(hp, torch.zeros_like):
            zero = sm.model(input_ids=ids).logits
        torch.testing.assert_close(same, clean)
        assert (zero - clean).abs().max() > 1e-3
    assert torch.equal(sm.model(input_ids=ids).logits, clean)  # hooks removed


def test_fast_gguf_parsing_reads_the_same_fields_and_tensors_and_restores():
    """The in-memory GGUF parse gives the same metadata and tensor bytes as gguf's memmap
    parse of the bundled file, and both patched names are restored afterwards."""
    import gguf
    import gguf.gguf_reader as reader
    import numpy as np

    from autointerp.model import fast_gguf_parsing, smollm2_gguf_path

    path = smollm2_gguf_path()
    ref = reader.GGUFReader(path)
    old_np, old_map = reader.np, gguf.get_tensor_name_map
    with fast_gguf_parsing():
        fast = reader.GGUFReader(path)
        arch = gguf.MODEL_ARCH.LLAMA
        assert gguf.get_tensor_name_map(arch, 30) is gguf.get_tensor_name_map(arch, 30)
    assert reader.np is old_np and gguf.get_tensor_name_map is old_map
    assert list(fast.fields) == list(ref.fields)
    for name in ("general.architecture", "llama.block_count", "tokenizer.ggml.tokens"):
        a, b = fast.fields[name], ref.fields[name]
        parts = [np.asarray(p).tolist() for p in b.parts]
        assert [np.asarray(p).tolist() for p in a.parts] == parts
    assert [t.name for t in fast.tensors] == [t.name for t in ref.tensors]
    for i in (0, len(ref.tensors) // 2, len(ref.tensors) - 1):
        assert np.array_equal(np.asarray(fast.tensors[i].data), np.asarray(ref.tensors[i].data))
