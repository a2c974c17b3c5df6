"""The hf_gpt2 model against stock transformers GPT-2 and the transformers v5 contract."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache, GPT2LMHeadModel

from hf_gpt2 import HfGPT2Config, HfGPT2ForCausalLM, HfGPT2Model
from hf_gpt2.convert import from_gpt2, to_gpt2


@pytest.fixture
def stock_and_ours(tiny_stock_gpt2):
    return tiny_stock_gpt2, from_gpt2(tiny_stock_gpt2)


def test_logits_and_loss_equal_stock_gpt2(stock_and_ours):
    stock, ours = stock_and_ours
    x = torch.randint(0, 50257, (3, 20), generator=torch.Generator().manual_seed(1))
    labels = x.clone()
    labels[:, :5] = -100
    with torch.no_grad():
        ref, out = stock(x, labels=labels), ours(x, labels=labels)
    assert (ref.logits - out.logits).abs().max() < 1e-4
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-5, atol=1e-5)


def test_greedy_generation_equals_stock_gpt2(stock_and_ours):
    stock, ours = stock_and_ours
    prompt = torch.randint(0, 50257, (1, 6), generator=torch.Generator().manual_seed(2))
    kwargs = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": 50256}
    expected = stock.generate(prompt, **kwargs)
    assert torch.equal(ours.generate(prompt, **kwargs), expected)
    assert torch.equal(ours.generate(prompt, use_cache=False, **kwargs), expected)


def test_training_gradients_equal_stock_gpt2(stock_and_ours):
    stock, ours = stock_and_ours
    stock.train()
    ours.train()
    x = torch.randint(0, 50257, (2, 16), generator=torch.Generator().manual_seed(3))
    stock(x, labels=x).loss.backward()
    ours(x, labels=x).loss.backward()
    torch.testing.assert_close(
        ours.transformer.wte.weight.grad, stock.transformer.wte.weight.grad, atol=1e-6, rtol=1e-4
    )
    ref = stock.transformer.h[1].mlp.c_fc.weight.grad.t()  # Conv1D (in, out) vs Linear (out, in)
    torch.testing.assert_close(ours.transformer.h[1].mlp.c_fc.weight.grad, ref, atol=1e-6, rtol=1e-4)


def test_future_tokens_do_not_change_past_logits(tiny_model):
    x = torch.randint(0, tiny_model.config.vocab_size, (1, 12))
    y = x.clone()
    y[:, 8:] = (y[:, 8:] + 1) % tiny_model.config.vocab_size
    with torch.no_grad():
        torch.testing.assert_close(tiny_model(x).logits[:, :8], tiny_model(y).logits[:, :8])


def test_incremental_decoding_with_cache_equals_full_forward(tiny_model):
    x = torch.randint(0, tiny_model.config.vocab_size, (2, 14))
    with torch.no_grad():
        full = tiny_model(x, use_cache=False).logits
        cache = DynamicCache(config=tiny_model.config)
        first = tiny_model(x[:, :6], cache=cache, use_cache=True)
        second = tiny_model(x[:, 6:10], cache=first.cache, use_cache=True)
        third = tiny_model(x[:, 10:], cache=second.cache, use_cache=True)
    stepped = torch.cat([first.logits, second.logits, third.logits], dim=1)
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=1e-5)
    assert third.cache.get_seq_length() == 14


def test_past_key_values_keyword_still_reaches_the_cache(tiny_model):
    x = torch.randint(0, tiny_model.config.vocab_size, (1, 8))
    with torch.no_grad():
        full = tiny_model(x).logits
        first = tiny_model(x[:, :5], use_cache=True)
        second = tiny_model(x[:, 5:], past_key_values=first.cache, use_cache=True)
    torch.testing.assert_close(second.logits, full[:, 5:], atol=1e-5, rtol=1e-5)


def test_left_padded_batch_equals_unpadded_rows(tiny_model):
    g = torch.Generator().manual_seed(4)
    short = torch.randint(1, tiny_model.config.vocab_size, (1, 5), generator=g)
    long = torch.randint(1, tiny_model.config.vocab_size, (1, 9), generator=g)
    batch = torch.cat([torch.cat([torch.zeros(1, 4, dtype=torch.long), short], dim=1), long])
    mask = torch.ones_like(batch)
    mask[0, :4] = 0
    with torch.no_grad():
        padded = tiny_model(batch, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
        alone = tiny_model(short).logits
    torch.testing.assert_close(padded[0, 4:], alone[0], atol=1e-5, rtol=1e-5)
    generated = tiny_model.generate(batch, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
    generated_alone = tiny_model.generate(short, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(generated[0, 4:], generated_alone[0])


def test_eager_attention_equals_sdpa(tiny_config):
    torch.manual_seed(0)
    model = HfGPT2ForCausalLM(tiny_config).eval()
    assert model.config._attn_implementation == "sdpa"
    x = torch.randint(0, tiny_config.vocab_size, (2, 16))
    mask = torch.ones_like(x)
    mask[1, :3] = 0
    with torch.no_grad():
        sdpa = model(x, attention_mask=mask).logits
        model.set_attn_implementation("eager")
        eager = model(x, attention_mask=mask).logits
    torch.testing.assert_close(eager[0], sdpa[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(eager[1, 3:], sdpa[1, 3:], atol=1e-5, rtol=1e-5)  # padded positions are don't-care


def test_logits_to_keep_returns_the_last_positions(tiny_model):
    x = torch.randint(0, tiny_model.config.vocab_size, (2, 10))
    with torch.no_grad():
        full = tiny_model(x).logits
        last = tiny_model(x, logits_to_keep=1).logits
    assert last.shape == (2, 1, tiny_model.config.vocab_size)
    torch.testing.assert_close(last, full[:, -1:])


def test_labels_minus_100_are_ignored(tiny_model):
    x = torch.randint(0, tiny_model.config.vocab_size, (1, 10))
    labels = x.clone()
    labels[:, :6] = -100
    with torch.no_grad():
        out = tiny_model(x, labels=labels)
    logits = out.logits[0, 5:-1]  # positions whose next-token label is kept
    expected = torch.nn.functional.cross_entropy(logits, x[0, 6:])
    torch.testing.assert_close(out.loss, expected)


def test_scaled_residual_init():
    torch.manual_seed(0)
    config = HfGPT2Config(vocab_size=128, n_positions=32, n_embd=128, n_layer=8, n_head=4)
    model = HfGPT2ForCausalLM(config)
    block = model.transformer.h[3]
    assert abs(block.attn.c_proj.weight.std().item() - 0.02 / 4) < 1e-3
    assert abs(block.mlp.c_proj.weight.std().item() - 0.02 / 4) < 1e-3
    assert abs(block.mlp.c_fc.weight.std().item() - 0.02) < 2e-3
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()


def test_tied_weights_survive_save_and_load(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(loaded) is HfGPT2ForCausalLM
    assert loaded.lm_head.weight.data_ptr() == loaded.transformer.wte.weight.data_ptr()
    x = torch.randint(0, tiny_model.config.vocab_size, (1, 8))
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, tiny_model(x).logits)
    assert (tmp_path / "model.safetensors").is_file()
    assert {"configuration_hf_gpt2.py", "modeling_hf_gpt2.py"} <= {p.name for p in tmp_path.iterdir()}


def test_gradient_checkpointing_gives_the_same_gradients(tiny_config):
    torch.manual_seed(0)
    model = HfGPT2ForCausalLM(tiny_config).train()
    x = torch.randint(0, tiny_config.vocab_size, (2, 12))
    model(x, labels=x).loss.backward()
    plain = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert model.transformer.gradient_checkpointing
    model(x, labels=x).loss.backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, plain[name], atol=1e-6, rtol=1e-5, msg=name)


def test_auto_model_returns_the_base_model(tiny_config):
    from transformers import AutoModel

    model = AutoModel.from_config(tiny_config)
    assert type(model) is HfGPT2Model
    out = model(torch.randint(0, tiny_config.vocab_size, (1, 5)))
    assert out.last_hidden_state.shape == (1, 5, tiny_config.n_embd)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"n_embd": 30, "n_head": 4}, "n_embd=30 is not divisible by n_head=4"),
        ({"n_layer": 0}, "n_layer must be a positive integer"),
        ({"resid_pdrop": 1.5}, "resid_pdrop must be in [0, 1)"),
        ({"activation_function": "swish2"}, "activation_function='swish2'"),
    ],
)
def test_invalid_configs_name_the_problem(kwargs, fragment):
    with pytest.raises(ValueError, match="invalid HfGPT2Config") as info:
        HfGPT2Config(**kwargs)
    assert fragment in str(info.value)


def test_sequence_longer_than_context_is_a_clear_error(tiny_model):
    x = torch.zeros(1, tiny_model.config.n_positions + 1, dtype=torch.long)
    with pytest.raises(ValueError, match="exceeds the model's n_positions=64"):
        tiny_model(x)


def test_stock_export_is_a_plain_gpt2(tiny_model):
    stock = to_gpt2(tiny_model)
    assert type(stock) is GPT2LMHeadModel
    x = torch.randint(0, tiny_model.config.vocab_size, (2, 9))
    with torch.no_grad():
        assert (stock(x).logits - tiny_model(x).logits).abs().max() < 1e-4


# -- the rest of stock GPT-2's forward contract ----------------------------------------------------------------------


def _pair(tiny_stock_gpt2, attn_implementation: str = "sdpa"):
    ours = from_gpt2(tiny_stock_gpt2)
    for model in (tiny_stock_gpt2, ours):
        model.set_attn_implementation(attn_implementation)
    return tiny_stock_gpt2, ours


def _assert_same_tensors(ours, theirs, atol: float = 1e-5) -> None:
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=atol)


@pytest.mark.parametrize("how", ["argument", "config"])
def test_hidden_states_and_attentions_equal_stock_gpt2(tiny_stock_gpt2, how):
    stock, ours = _pair(tiny_stock_gpt2, "eager")  # attention probabilities exist in eager attention only
    x = torch.randint(0, 50257, (2, 9), generator=torch.Generator().manual_seed(5))
    kwargs = {"output_hidden_states": True, "output_attentions": True}
    if how == "config":
        for model in (stock, ours):
            model.config.output_hidden_states = model.config.output_attentions = True
        kwargs = {}
    with torch.no_grad():
        ref, out = stock(x, **kwargs), ours(x, **kwargs)
        base = ours.transformer(x, **kwargs)
    assert len(out.hidden_states) == ours.config.n_layer + 1 and len(out.attentions) == ours.config.n_layer
    _assert_same_tensors(out.hidden_states, ref.hidden_states)
    _assert_same_tensors(out.attentions, ref.attentions)
    _assert_same_tensors(base.hidden_states, ref.hidden_states)
    torch.testing.assert_close(out.hidden_states[-1], base.last_hidden_state)


def test_generate_returns_stock_gpt2s_scores_hidden_states_and_attentions(tiny_stock_gpt2):
    stock, ours = _pair(tiny_stock_gpt2, "eager")
    prompt = torch.randint(0, 50257, (2, 5), generator=torch.Generator().manual_seed(6))
    kwargs = dict(
        max_new_tokens=4, do_sample=False, pad_token_id=50256, return_dict_in_generate=True, output_scores=True,
        output_logits=True, output_hidden_states=True, output_attentions=True,
    )  # fmt: skip
    ref, out = stock.generate(prompt, **kwargs), ours.generate(prompt, **kwargs)
    assert torch.equal(out.sequences, ref.sequences)
    _assert_same_tensors(out.scores, ref.scores, atol=1e-4)
    _assert_same_tensors(out.logits, ref.logits, atol=1e-4)
    assert len(out.hidden_states) == len(ref.hidden_states) == 4  # one tuple per generated token
    for step_ours, step_ref in zip(out.hidden_states, ref.hidden_states, strict=True):
        _assert_same_tensors(step_ours, step_ref)
    for step_ours, step_ref in zip(out.attentions, ref.attentions, strict=True):
        _assert_same_tensors(step_ours, step_ref)


@pytest.mark.parametrize("where", ["argument", "config"])
def test_return_dict_false_returns_stock_gpt2s_tuple(tiny_stock_gpt2, where):
    stock, ours = _pair(tiny_stock_gpt2)
    x = torch.randint(0, 50257, (2, 7), generator=torch.Generator().manual_seed(7))
    kwargs = {"labels": x, "use_cache": True, "output_hidden_states": True}
    with torch.no_grad():
        ref = stock(x, **kwargs, return_dict=False)  # (stock GPT-2 fails with config.return_dict=False)
        if where == "config":
            ours.config.return_dict = False
            out = ours(x, **kwargs)
        else:
            out = ours(x, **kwargs, return_dict=False)
    assert type(out) is tuple and len(out) == len(ref) == 4  # loss, logits, cache, hidden states
    torch.testing.assert_close(out[0], ref[0])
    torch.testing.assert_close(out[1], ref[1], rtol=1e-4, atol=1e-4)
    assert out[2].get_seq_length() == ref[2].get_seq_length() == 7
    _assert_same_tensors(out[3], ref[3])
    base = ours.transformer(x, return_dict=False) if where == "argument" else ours.transformer(x)
    assert type(base) is tuple and base[0].shape == (2, 7, ours.config.n_embd)


def test_token_type_ids_add_their_embeddings_like_stock_gpt2(tiny_stock_gpt2):
    stock, ours = _pair(tiny_stock_gpt2)
    g = torch.Generator().manual_seed(8)
    x, types = torch.randint(0, 50257, (2, 8), generator=g), torch.randint(0, 3, (2, 8), generator=g)
    with torch.no_grad():
        ref, out = stock(x, token_type_ids=types).logits, ours(x, token_type_ids=types).logits
        assert (out - ours(x).logits).abs().max() > 1e-3  # the token types do change the logits
    assert (out - ref).abs().max() < 1e-4


@pytest.mark.parametrize("do_sample", [False, True])
def test_generate_carries_token_type_ids_like_stock_gpt2(tiny_stock_gpt2, do_sample):
    stock, ours = _pair(tiny_stock_gpt2)
    g = torch.Generator().manual_seed(9)
    prompt, types = torch.randint(0, 50257, (2, 5), generator=g), torch.ones(2, 5, dtype=torch.long)
    kwargs = {"max_new_tokens": 6, "do_sample": do_sample, "pad_token_id": 50256, "token_type_ids": types}
    outputs = []
    for model in (stock, ours):
        torch.manual_seed(10)
        outputs.append(model.generate(prompt, **kwargs))
    assert torch.equal(outputs[1], outputs[0])
    torch.manual_seed(10)
    assert not torch.equal(ours.generate(prompt, **{**kwargs, "token_type_ids": None}), outputs[1])


def test_resize_token_embeddings_equals_stock_gpt2(tiny_stock_gpt2):
    stock, ours = _pair(tiny_stock_gpt2)
    new_rows = {}
    for name, model in (("stock", stock), ("ours", ours)):
        torch.manual_seed(11)
        embedding = model.resize_token_embeddings(50257 + 10)
        assert embedding.weight.shape == model.get_output_embeddings().weight.shape == (50267, 32)
        assert model.config.vocab_size == 50267
        new_rows[name] = model.get_input_embeddings().weight.detach()[50257:]
    torch.testing.assert_close(new_rows["ours"], new_rows["stock"])  # transformers' mean initialisation
    x = torch.randint(50257, 50267, (1, 6))
    with torch.no_grad():
        assert (ours(x).logits - stock(x).logits).abs().max() < 1e-4


def test_a_fused_head_loss_from_the_output_embeddings_scores_no_phantom_tokens(tiny_stock_gpt2):
    """What TRL and Liger-style losses do: hidden states @ get_output_embeddings().weight.T."""
    stock, ours = _pair(tiny_stock_gpt2)
    x = torch.randint(0, 50257, (2, 9), generator=torch.Generator().manual_seed(12))
    losses = []
    for model in (stock, ours):
        with torch.no_grad():
            hidden = model(x, output_hidden_states=True).hidden_states[-1]
        logits = hidden @ model.get_output_embeddings().weight.T
        losses.append(torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten()))
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)


def test_a_release_with_padded_vocabulary_rows_loads_stripped(tiny_model, tmp_path):
    """Releases written while the embedding held padding rows (vocab_size rounded up to 128) still load exactly."""
    from safetensors.torch import load_file, save_file

    tiny_model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    wte = state["transformer.wte.weight"]
    state["transformer.wte.weight"] = torch.cat([wte, torch.full((128 - len(wte), wte.shape[1]), 7.0)])
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    x = torch.randint(0, tiny_model.config.vocab_size, (2, 6))
    with torch.no_grad():
        expected = tiny_model(x).logits
        for cls in (AutoModelForCausalLM, HfGPT2ForCausalLM):
            loaded = cls.from_pretrained(tmp_path).eval()
            assert loaded.transformer.wte.weight.shape == (tiny_model.config.vocab_size, 32)
            assert loaded.lm_head.weight.data_ptr() == loaded.transformer.wte.weight.data_ptr()
            assert torch.equal(loaded(x).logits, expected)
        assert HfGPT2Model.from_pretrained(tmp_path).wte.weight.shape == (tiny_model.config.vocab_size, 32)
    loaded.save_pretrained(tmp_path / "again")
    assert load_file(tmp_path / "again" / "model.safetensors")["transformer.wte.weight"].shape == (96, 32)
