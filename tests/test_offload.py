"""accelerate's big-model inference: offloaded and split models give the in-memory model's outputs.

The forward must reach every weight through its module, so that accelerate's hooks load it where it is offloaded:
the tied embedding / LM head on disk, blocks split between CPU and disk, and every weight held off-model
(``cpu_offload``: the parameters live on the meta device and are loaded for each forward).
"""

from __future__ import annotations

import pytest
import torch
from accelerate import cpu_offload

from hf_gpt2 import HfGPT2Config, HfGPT2ForCausalLM

TIED_ON_DISK = {
    "transformer.wte": "disk",
    "lm_head": "disk",
    "transformer.wpe": "cpu",
    "transformer.drop": "cpu",
    "transformer.h": "cpu",
    "transformer.ln_f": "cpu",
}
SPLIT = {
    "transformer.wte": "cpu",
    "lm_head": "cpu",
    "transformer.wpe": "cpu",
    "transformer.drop": "cpu",
    "transformer.h.0": "cpu",
    "transformer.h.1": "disk",
    "transformer.h.2": "disk",
    "transformer.ln_f": "disk",
}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    config = HfGPT2Config(
        vocab_size=300, n_positions=32, n_embd=32, n_layer=3, n_head=4, bos_token_id=0, eos_token_id=0,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = HfGPT2ForCausalLM(config).eval()
    folder = tmp_path_factory.mktemp("release")
    model.save_pretrained(folder)
    return folder, model


def _expected(model: HfGPT2ForCausalLM, x: torch.Tensor) -> dict:
    with torch.no_grad():
        return {
            "logits": model(x).logits,
            "loss": model(x, labels=x).loss,
            "greedy": model.generate(x[:1, :4], max_new_tokens=6, do_sample=False, pad_token_id=0),
        }


def _check(model: torch.nn.Module, expected: dict, x: torch.Tensor) -> None:
    with torch.no_grad():
        out = model(x, labels=x)
        torch.testing.assert_close(out.logits, expected["logits"], rtol=0, atol=1e-6)
        torch.testing.assert_close(out.loss, expected["loss"], rtol=0, atol=1e-6)
        # the loss without logits runs inside the head's forward, where the hooks have loaded its weight
        torch.testing.assert_close(model(x, labels=x, skip_logits=True).loss, expected["loss"], rtol=1e-6, atol=1e-6)
        greedy = model.generate(x[:1, :4], max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(greedy, expected["greedy"])


@pytest.mark.parametrize(
    "device_map", [TIED_ON_DISK, SPLIT], ids=["tied-embedding-and-head-on-disk", "cpu-disk-split"]
)
def test_disk_offload_gives_the_in_memory_outputs(release, tmp_path, device_map):
    folder, in_memory = release
    x = torch.randint(0, 300, (2, 10), generator=torch.Generator().manual_seed(1))
    expected = _expected(in_memory, x)
    model = HfGPT2ForCausalLM.from_pretrained(folder, device_map=device_map, offload_folder=tmp_path / "offload")
    offloaded = {name for name, p in model.named_parameters() if p.device.type == "meta"}
    assert "transformer.wte.weight" in offloaded or "transformer.h.1.attn.c_attn.weight" in offloaded
    _check(model.eval(), expected, x)


def test_cpu_offload_with_weights_on_the_meta_device(release):
    folder, in_memory = release
    x = torch.randint(0, 300, (2, 10), generator=torch.Generator().manual_seed(2))
    expected = _expected(in_memory, x)
    model = cpu_offload(HfGPT2ForCausalLM.from_pretrained(folder).eval(), execution_device=torch.device("cpu"))
    assert all(p.device.type == "meta" for p in model.parameters())
    _check(model, expected, x)
