"""The chunked LM-head + cross-entropy equals the plain computation; the padded vocabulary never shows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers.loss.loss_utils import ForCausalLMLoss

from hf_gpt2 import HfGPT2Config, HfGPT2ForCausalLM
from hf_gpt2.convert import from_gpt2, to_gpt2
from hf_gpt2.modeling_hf_gpt2 import linear_cross_entropy

B, T, C, V, VP = 3, 7, 16, 37, 40  # 21 rows; 3 padding rows in the head


def _inputs(seed: int = 0, dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, C, generator=g, dtype=dtype).requires_grad_()
    weight = (torch.randn(VP, C, generator=g) * 0.5).requires_grad_()
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[0, :3] = -100
    labels[2, 4] = -100
    return hidden, weight, labels


def _plain(hidden, weight, labels, **kwargs):
    logits = F.linear(hidden, weight[:V])  # (B, T, V)
    return ForCausalLMLoss(logits, labels, vocab_size=V, **kwargs)


def _grads(loss_fn, hidden, weight, labels, **kwargs):
    loss = loss_fn(hidden, weight, labels, **kwargs)
    grad_hidden, grad_weight = torch.autograd.grad(loss, (hidden, weight))
    return loss.detach(), grad_hidden, grad_weight


def _chunked(chunk_size):
    def loss_fn(hidden, weight, labels, **kwargs):
        return linear_cross_entropy(hidden, weight, labels, V, chunk_size, **kwargs)

    return loss_fn


@pytest.mark.parametrize("chunk_size", [1, 4, 5, 21, 64])  # 5: last chunk of 1 row; 4: of 1 after 5 chunks
@pytest.mark.parametrize("num_items_in_batch", [None, 13, "tensor"])
def test_chunked_loss_and_gradients_equal_plain_fp32(chunk_size, num_items_in_batch):
    hidden, weight, labels = _inputs()
    kwargs = {}
    if num_items_in_batch == "tensor":
        kwargs["num_items_in_batch"] = torch.tensor(11)
    elif num_items_in_batch is not None:
        kwargs["num_items_in_batch"] = num_items_in_batch
    expected = _grads(_plain, hidden, weight, labels, **kwargs)
    got = _grads(_chunked(chunk_size), hidden, weight, labels, **kwargs)
    for name, a, b in zip(("loss", "grad hidden", "grad weight"), got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert torch.all(got[2][V:] == 0), "padding rows of the head must get no gradient"


def test_ignored_rows_get_zero_hidden_gradient():
    hidden, weight, labels = _inputs(1)
    _, grad_hidden, _ = _grads(_chunked(4), hidden, weight, labels)
    assert torch.all(grad_hidden[0, :2] == 0)  # labels[0, 1:3] are -100: positions 0 and 1 predict nothing
    assert torch.all(grad_hidden[:, -1] == 0)  # the last position has no next token


def test_shift_labels_and_upstream_gradient_scale():
    hidden, weight, labels = _inputs(2)
    shifted = F.pad(labels, (0, 1), value=-100)[..., 1:]
    loss = linear_cross_entropy(hidden, weight, None, V, 4, shift_labels=shifted)
    (3.0 * loss).backward()
    expected = _plain(hidden, weight, labels)
    torch.testing.assert_close(loss.detach(), expected.detach())
    grad_hidden = torch.autograd.grad(3.0 * _plain(hidden, weight, labels), hidden)[0]
    torch.testing.assert_close(hidden.grad, grad_hidden, rtol=1e-5, atol=1e-6)


def test_bf16_autocast_is_close_to_plain_autocast():
    hidden, weight, labels = _inputs(3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = _grads(_plain, hidden, weight, labels)
        got = _grads(_chunked(5), hidden, weight, labels)
    assert got[0].dtype == torch.float32 and got[2].dtype == torch.float32
    torch.testing.assert_close(got[0], expected[0], rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(got[1], expected[1], rtol=5e-2, atol=5e-3)
    torch.testing.assert_close(got[2], expected[2], rtol=5e-2, atol=5e-3)


def test_frozen_head_computes_only_the_hidden_gradient():
    hidden, weight, labels = _inputs(4)
    weight.requires_grad_(False)
    loss = linear_cross_entropy(hidden, weight, labels, V, 4)
    loss.backward()
    expected = torch.autograd.grad(_plain(hidden, weight, labels), hidden)[0]
    torch.testing.assert_close(hidden.grad, expected, rtol=1e-5, atol=1e-6)


@pytest.fixture
def padded_config():
    return HfGPT2Config(
        vocab_size=90, n_positions=32, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, bos_token_id=0, eos_token_id=0, vocab_pad_multiple=128, loss_chunk_size=7,
    )  # fmt: skip


def test_model_training_loss_and_gradients_equal_plain_head(padded_config):
    torch.manual_seed(0)
    model = HfGPT2ForCausalLM(padded_config).train()
    x = torch.randint(0, 90, (2, 12))
    labels = x.clone()
    labels[1, :5] = -100
    fused = model(x, labels=labels)
    assert fused.logits is None
    fused.loss.backward()
    fused_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    model.config.loss_chunk_size = 0
    plain = model(x, labels=labels)
    assert plain.logits.shape == (2, 12, 90)
    plain.loss.backward()
    torch.testing.assert_close(fused.loss, plain.loss, rtol=1e-5, atol=1e-6)
    for name, p in model.named_parameters():
        torch.testing.assert_close(fused_grads[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_model_num_items_in_batch_divides_the_summed_loss(padded_config):
    torch.manual_seed(0)
    model = HfGPT2ForCausalLM(padded_config).train()
    x = torch.randint(0, 90, (2, 10))
    mean = model(x, labels=x).loss
    summed = model(x, labels=x, num_items_in_batch=torch.tensor(50)).loss
    torch.testing.assert_close(summed, mean * 18 / 50)  # 2 × 9 predicted tokens


def test_eval_mode_and_no_grad_return_logits_with_the_loss(padded_config):
    torch.manual_seed(0)
    model = HfGPT2ForCausalLM(padded_config)
    x = torch.randint(0, 90, (2, 10))
    with torch.no_grad():
        train_no_grad = model.train()(x, labels=x)
    evaluated = model.eval()(x, labels=x)
    assert evaluated.logits.shape == train_no_grad.logits.shape == (2, 10, 90)
    model.train()
    torch.testing.assert_close(model(x, labels=x).loss, evaluated.loss, rtol=1e-5, atol=1e-6)


def test_padding_rows_never_win_and_generation_ignores_them(padded_config):
    torch.manual_seed(0)
    model = HfGPT2ForCausalLM(padded_config).eval()
    assert model.lm_head.weight.shape == (128, 32) and model.transformer.wte.weight.shape == (128, 32)
    x = torch.randint(1, 90, (1, 6))
    with torch.no_grad():
        before = model.generate(x, max_new_tokens=8, do_sample=False, pad_token_id=0)
        model.lm_head.weight[90:] = 100.0  # would win every argmax if the padding rows were scored
        after = model.generate(x, max_new_tokens=8, do_sample=False, pad_token_id=0)
        assert model(x).logits.shape == (1, 6, 90)
    assert torch.equal(before, after)
    assert int(after.max()) < 90


def test_padded_model_round_trips_through_stock_gpt2(padded_config):
    torch.manual_seed(0)
    model = HfGPT2ForCausalLM(padded_config).eval()
    stock = to_gpt2(model)
    assert stock.transformer.wte.weight.shape == (90, 32)
    back = from_gpt2(stock, vocab_pad_multiple=128)
    assert back.lm_head.weight.shape == (128, 32)
    x = torch.randint(0, 90, (2, 9))
    with torch.no_grad():
        logits = model(x).logits
        assert (stock(x).logits - logits).abs().max() < 1e-4
        assert (back(x).logits - logits).abs().max() < 1e-4
        assert (from_gpt2(stock)(x).logits - logits).abs().max() < 1e-4  # unpadded conversion


def test_resize_token_embeddings_keeps_the_padding(padded_config, tmp_path):
    torch.manual_seed(0)
    model = HfGPT2ForCausalLM(padded_config)
    model.resize_token_embeddings(131)
    assert model.config.vocab_size == 131
    assert model.transformer.wte.weight.shape == (256, 32)
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    model.save_pretrained(tmp_path)
    loaded = HfGPT2ForCausalLM.from_pretrained(tmp_path).eval()
    x = torch.randint(0, 131, (1, 5))
    with torch.no_grad():
        assert loaded(x).logits.shape == (1, 5, 131)
        torch.testing.assert_close(loaded(x).logits, model.eval()(x).logits)


def test_training_forward_builds_no_kv_cache_unless_asked(padded_config):
    model = HfGPT2ForCausalLM(padded_config).train()
    x = torch.randint(0, 90, (1, 6))
    assert model(x, labels=x).cache is None
    assert model(x, use_cache=True).cache.get_seq_length() == 6
    with torch.no_grad():
        assert model.eval()(x).cache.get_seq_length() == 6
