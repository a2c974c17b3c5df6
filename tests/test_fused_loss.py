"""The chunked LM-head + cross-entropy equals the plain computation; the model uses it only when asked."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers.loss.loss_utils import ForCausalLMLoss

from hf_gpt2 import HfGPT2Config, HfGPT2ForCausalLM
from hf_gpt2.fused_loss import linear_cross_entropy

B, T, C, V = 3, 7, 16, 37  # 21 rows


def _inputs(seed: int = 0, dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, C, generator=g, dtype=dtype).requires_grad_()
    weight = (torch.randn(V, C, generator=g) * 0.5).requires_grad_()
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[0, :3] = -100
    labels[2, 4] = -100
    return hidden, weight, labels


def _plain(hidden, weight, labels, **kwargs):
    logits = F.linear(hidden, weight)  # (B, T, V)
    return ForCausalLMLoss(logits, labels, vocab_size=V, **kwargs)


def _grads(loss_fn, hidden, weight, labels, **kwargs):
    loss = loss_fn(hidden, weight, labels, **kwargs)
    grad_hidden, grad_weight = torch.autograd.grad(loss, (hidden, weight))
    return loss.detach(), grad_hidden, grad_weight


def _chunked(chunk_size, pad_multiple=8):  # 37 → a 40-wide logits buffer: 3 padding columns
    def loss_fn(hidden, weight, labels, **kwargs):
        return linear_cross_entropy(hidden, weight, labels, chunk_size=chunk_size, pad_multiple=pad_multiple, **kwargs)

    return loss_fn


@pytest.mark.parametrize("chunk_size", [1, 4, 5, 21, 64])  # 5: last chunk of 1 row; 4: of 1 after 5 chunks
@pytest.mark.parametrize("num_items_in_batch", [None, 13, "tensor"])
@pytest.mark.parametrize("pad_multiple", [1, 8])
def test_chunked_loss_and_gradients_equal_plain_fp32(chunk_size, num_items_in_batch, pad_multiple):
    hidden, weight, labels = _inputs()
    kwargs = {}
    if num_items_in_batch == "tensor":
        kwargs["num_items_in_batch"] = torch.tensor(11)
    elif num_items_in_batch is not None:
        kwargs["num_items_in_batch"] = num_items_in_batch
    expected = _grads(_plain, hidden, weight, labels, **kwargs)
    got = _grads(_chunked(chunk_size, pad_multiple), hidden, weight, labels, **kwargs)
    for name, a, b in zip(("loss", "grad hidden", "grad weight"), got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert got[2].shape == (V, C)


def test_ignored_rows_get_zero_hidden_gradient():
    hidden, weight, labels = _inputs(1)
    _, grad_hidden, _ = _grads(_chunked(4), hidden, weight, labels)
    assert torch.all(grad_hidden[0, :2] == 0)  # labels[0, 1:3] are -100: positions 0 and 1 predict nothing
    assert torch.all(grad_hidden[:, -1] == 0)  # the last position has no next token


def test_shift_labels_and_upstream_gradient_scale():
    hidden, weight, labels = _inputs(2)
    shifted = F.pad(labels, (0, 1), value=-100)[..., 1:]
    loss = _chunked(4)(hidden, weight, None, shift_labels=shifted)
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
    loss = _chunked(4)(hidden, weight, labels)
    loss.backward()
    expected = torch.autograd.grad(_plain(hidden, weight, labels), hidden)[0]
    torch.testing.assert_close(hidden.grad, expected, rtol=1e-5, atol=1e-6)


def test_no_grad_forward_gives_the_same_loss():
    hidden, weight, labels = _inputs(5)
    with torch.no_grad():
        torch.testing.assert_close(_chunked(4)(hidden, weight, labels), _plain(hidden, weight, labels))


@pytest.fixture
def config():
    return HfGPT2Config(
        vocab_size=90, n_positions=32, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, bos_token_id=0, eos_token_id=0, vocab_pad_multiple=128, loss_chunk_size=7,
    )  # fmt: skip


def test_skip_logits_gives_the_loss_and_gradients_of_the_plain_head(config):
    torch.manual_seed(0)
    model = HfGPT2ForCausalLM(config).train()
    x = torch.randint(0, 90, (2, 12))
    labels = x.clone()
    labels[1, :5] = -100
    fused = model(x, labels=labels, skip_logits=True)
    assert fused.logits is None
    fused.loss.backward()
    fused_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    plain = model(x, labels=labels)
    assert plain.logits.shape == (2, 12, 90)
    plain.loss.backward()
    torch.testing.assert_close(fused.loss, plain.loss, rtol=1e-5, atol=1e-6)
    for name, p in model.named_parameters():
        torch.testing.assert_close(fused_grads[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_by_default_training_with_labels_returns_logits(config):
    """Trainer with compute_metrics, TRL and user code read logits in training mode, as stock GPT-2 gives them."""
    model = HfGPT2ForCausalLM(config).train()
    x = torch.randint(0, 90, (2, 10))
    out = model(x, labels=x)
    assert out.logits.shape == (2, 10, 90) and out.logits.requires_grad
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits[:, :-1].reshape(-1, 90), x[:, 1:].reshape(-1)))


def test_skip_logits_without_labels_is_a_clear_error(config):
    model = HfGPT2ForCausalLM(config)
    with pytest.raises(ValueError, match="skip_logits=True returns only the loss: pass labels"):
        model(torch.zeros(1, 4, dtype=torch.long), skip_logits=True)


@pytest.mark.parametrize("chunk", [7, 0])  # 0: the loss from full logits, which are dropped
def test_skip_logits_num_items_in_batch_divides_the_summed_loss(config, chunk):
    config.loss_chunk_size = chunk
    torch.manual_seed(0)
    model = HfGPT2ForCausalLM(config).train()
    x = torch.randint(0, 90, (2, 10))
    mean = model(x, labels=x, skip_logits=True).loss
    summed = model(x, labels=x, num_items_in_batch=torch.tensor(50), skip_logits=True)
    assert summed.logits is None
    torch.testing.assert_close(summed.loss, mean * 18 / 50)  # 2 × 9 predicted tokens


def test_skip_logits_in_eval_and_no_grad_gives_the_plain_loss(config):
    torch.manual_seed(0)
    model = HfGPT2ForCausalLM(config).eval()
    x = torch.randint(0, 90, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(model(x, labels=x, skip_logits=True).loss, model(x, labels=x).loss)


def test_the_vocabulary_matrices_have_vocab_size_rows(config):
    model = HfGPT2ForCausalLM(config)
    assert model.get_output_embeddings().weight.shape == (90, 32)
    assert model.get_input_embeddings().weight.shape == (90, 32)
    assert model(torch.randint(0, 90, (1, 6))).logits.shape == (1, 6, 90)


def test_resize_token_embeddings_gives_new_rows_with_mean_init_and_keeps_the_fused_loss(config, tmp_path):
    torch.manual_seed(0)
    model = HfGPT2ForCausalLM(config)
    old = model.transformer.wte.weight.detach().clone()
    model.resize_token_embeddings(100)
    assert model.config.vocab_size == 100
    assert model.transformer.wte.weight.shape == model.lm_head.weight.shape == (100, 32)
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    new_rows = model.transformer.wte.weight.detach()[90:]
    assert torch.equal(model.transformer.wte.weight.detach()[:90], old)
    # transformers' mean resizing: new rows drawn around the old rows' mean, far closer to it than N(0, 0.02) rows
    assert (new_rows.mean(0) - old.mean(0)).abs().max() < 0.02
    x = torch.randint(0, 100, (2, 8))
    model.train()
    torch.testing.assert_close(model(x, labels=x, skip_logits=True).loss, model(x, labels=x).loss)
    model.save_pretrained(tmp_path)
    loaded = HfGPT2ForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert loaded(x).logits.shape == (2, 8, 100)
        torch.testing.assert_close(loaded(x).logits, model.eval()(x).logits)


def test_training_forward_builds_no_kv_cache_unless_asked(config):
    model = HfGPT2ForCausalLM(config).train()
    x = torch.randint(0, 90, (1, 6))
    assert model(x, labels=x).cache is None
    assert model(x, use_cache=True).cache.get_seq_length() == 6
    with torch.no_grad():
        assert model.eval()(x).cache.get_seq_length() == 6
