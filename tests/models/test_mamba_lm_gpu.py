"""MambaLM on CUDA: the cuda path against the reference path and mamba_ssm's MambaLMHeadModel
with identical weights; carried state; liger's fused CE; generation speed at 130M.

    PYTHONPATH=.:$PYTHONPATH pytest -q -s -m gpu tests/models/test_mamba_lm_gpu.py
"""
from __future__ import annotations

import dataclasses
import time

import pytest
import torch

from mambalab.models import build_mamba_lm, generate
from mambalab.ops import unavailable_reason
from mambalab.ops.cross_entropy import chunked_linear_cross_entropy, fused_linear_cross_entropy

pytestmark = pytest.mark.gpu
KW = dict(d_model=128, n_layer=3, vocab_size=1000, d_state=16)


def need_cuda_kernels() -> None:
    for op in ("selective_scan", "causal_conv1d", "rms_norm", "mamba_inner"):
        reason = unavailable_reason(op, "cuda", "cuda")
        if reason is not None:
            pytest.skip(f"kernels=cuda cannot run: {reason}")


def rel_err(a, b) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


def loss_logits_grads(model, ids, targets, autocast: bool):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        logits = model(ids).logits
        loss = model(ids, targets=targets).loss
    loss.backward()
    return loss.detach(), logits.detach(), {n: p.grad.detach().clone()
                                            for n, p in model.named_parameters()}


def twin_models(kernels_a: str, kernels_b: str):
    torch.manual_seed(0)
    a = build_mamba_lm(**KW, kernels=kernels_a).cuda()
    b = build_mamba_lm(**KW, kernels=kernels_b).cuda()
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("autocast,tol", [(False, 2e-3), (True, 3e-2)])
def test_cuda_path_matches_reference_path(autocast, tol):
    need_cuda_kernels()
    fast, ref = twin_models("cuda", "reference")
    assert fast.kernel_report()["mamba_inner"] == "cuda"
    ids = torch.randint(0, 1000, (2, 256), device="cuda")
    targets = torch.randint(0, 1000, (2, 256), device="cuda")
    loss_f, logits_f, grads_f = loss_logits_grads(fast, ids, targets, autocast)
    loss_r, logits_r, grads_r = loss_logits_grads(ref, ids, targets, autocast)
    assert abs(loss_f.item() - loss_r.item()) < tol * loss_r.item()
    assert rel_err(logits_f, logits_r) < tol
    bad = {n: rel_err(grads_f[n], grads_r[n]) for n in grads_r
           if rel_err(grads_f[n], grads_r[n]) > 3 * tol}
    assert not bad, bad


def test_matches_mamba_ssm_lm_head_model():
    need_cuda_kernels()
    from mamba_ssm.models.config_mamba import MambaConfig as SsmConfig
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel

    torch.manual_seed(0)
    ours = build_mamba_lm(**KW, kernels="cuda").cuda()
    fields = {f.name for f in dataclasses.fields(SsmConfig)}
    cfg = dict(d_model=KW["d_model"], n_layer=KW["n_layer"], vocab_size=KW["vocab_size"],
               ssm_cfg={"d_state": KW["d_state"]}, rms_norm=True, residual_in_fp32=True,
               fused_add_norm=True, pad_vocab_size_multiple=8, tie_embeddings=True)
    if "d_intermediate" in fields:
        cfg["d_intermediate"] = 0
    if "layer" not in cfg["ssm_cfg"] and "attn_layer_idx" in fields:
        cfg["ssm_cfg"]["layer"] = "Mamba1"
    theirs = MambaLMHeadModel(SsmConfig(**{k: v for k, v in cfg.items() if k in fields})).cuda()
    assert sum(p.numel() for p in theirs.parameters()) == ours.num_parameters()
    theirs.load_state_dict(ours.state_dict())
    ids = torch.randint(0, 1000, (2, 256), device="cuda")
    for autocast, tol in ((False, 2e-3), (True, 3e-2)):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            ref_logits = theirs(ids).logits
            got_logits = ours(ids).logits
        assert rel_err(got_logits, ref_logits) < tol
    ours.zero_grad(), theirs.zero_grad()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        ref_loss = torch.nn.functional.cross_entropy(
            theirs(ids[:, :-1]).logits.float().flatten(0, 1), ids[:, 1:].flatten())
        our_loss = ours(ids[:, :-1], targets=ids[:, 1:]).loss
    ref_loss.backward(), our_loss.backward()
    assert abs(our_loss.item() - ref_loss.item()) < 3e-2
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert rel_err(p.grad, theirs_params[name].grad) < 0.1, name


def test_carried_state_and_doc_starts_on_cuda():
    """kernels=auto on the GPU: a state carried over three chunks gives one forward's logits;
    document starts run on the kernels that reset there (with mamba-ssm installed, auto's mixer is
    its kernel, which cannot: the forward takes the Triton one) and match the reference, the
    second document as if run alone; explicit kernels=cuda refuses them with a clear error."""
    torch.manual_seed(0)
    model = build_mamba_lm(**KW).cuda().eval()
    ids = torch.randint(0, 1000, (2, 96), device="cuda")
    with torch.no_grad():
        full = model(ids).logits
        state = model.allocate_state(2)
        chunks = [model(ids[:, i:i + 32], state=state).logits for i in range(0, 96, 32)]
    assert rel_err(torch.cat(chunks, 1), full) < 2e-3
    print("kernel_report on", torch.cuda.get_device_name(), model.kernel_report())

    docs = torch.zeros_like(ids, dtype=torch.bool)
    docs[:, 40] = True
    docs[1, 70] = True
    ref = build_mamba_lm(**KW, kernels="reference").cuda().eval()
    ref.load_state_dict(model.state_dict())
    with torch.no_grad():
        got = model(ids, doc_starts=docs).logits
        want = ref(ids, doc_starts=docs).logits
        alone = model(ids[:, 40:]).logits
    assert rel_err(got, want) < 2e-3
    assert rel_err(got[0, 40:], alone[0]) < 2e-3          # row 0: one start, at 40
    assert rel_err(got[0, 40:], full[0, 40:]) > 1e-2      # the start changed what follows it

    if unavailable_reason("mamba_inner", "cuda", "cuda") is None:
        explicit = build_mamba_lm(**KW, kernels="cuda").cuda().eval()
        explicit.load_state_dict(model.state_dict())
        with pytest.raises(ValueError, match="doc_starts"), torch.no_grad():
            explicit(ids, doc_starts=docs)


@pytest.mark.parametrize("impl", ["triton", "liger"])
def test_fused_ce_matches_chunked_under_autocast(impl):
    """Both fused losses on the GPU at the head's full shape (vocabulary 50,280) against the
    chunked fp32-logits path: loss and gradients under bf16 autocast, ignored rows included."""
    from mambalab.ops.cross_entropy.liger import liger_unavailable_reason

    if impl == "liger" and liger_unavailable_reason() is not None:
        pytest.skip(liger_unavailable_reason())
    torch.manual_seed(0)
    h = torch.randn(4096, 768, device="cuda", requires_grad=True)
    w = (0.02 * torch.randn(50280, 768, device="cuda")).requires_grad_(True)
    t = torch.randint(0, 50280, (4096,), device="cuda")
    t[:100] = -100
    results = []
    for name in (impl, "chunked"):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fused_linear_cross_entropy(h, w, t, impl=name)
        gh, gw = torch.autograd.grad(loss * 2.0, (h, w))
        results.append((loss.detach(), gh, gw))
    (l1, gh1, gw1), (l2, gh2, gw2) = results
    assert abs(l1.item() - l2.item()) < 1e-2
    assert rel_err(gh1, gh2) < 2e-2 and rel_err(gw1, gw2) < 2e-2
    assert (gh1[:100] == 0).all()
    ref = chunked_linear_cross_entropy(h.detach(), w.detach(), t, reduction="sum")
    got = fused_linear_cross_entropy(h.detach(), w.detach(), t, reduction="sum", impl=impl)
    assert abs(got.item() - ref.item()) < 1e-3 * ref.item()


def test_generation_speed_at_130m():
    torch.manual_seed(0)
    model = build_mamba_lm(d_model=768, n_layer=24, vocab_size=50280).cuda().eval()
    model = model.to(torch.bfloat16)
    prompt = torch.randint(0, 50280, (1, 128), device="cuda")
    generate(model, prompt, max_new_tokens=8, temperature=0.0)         # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = generate(model, prompt, max_new_tokens=256, temperature=1.0, top_k=50, seed=0)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    new = out.shape[1] - prompt.shape[1]
    print(f"\n[generation] Mamba-130M bf16 batch 1 on {torch.cuda.get_device_name()}: {new} tokens "
          f"in {seconds:.2f} s = {new / seconds:.1f} tokens/s (prefill 128 included); "
          f"kernels {model.kernel_report()}")
    assert new == 256


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-3), (torch.bfloat16, 5e-2)])
def test_step_matches_forward_on_cuda(dtype, tol):
    """step() (mamba_ssm's decoding kernels when installed) against one full forward pass."""
    torch.manual_seed(0)
    model = build_mamba_lm(**KW).cuda().to(dtype).eval()
    ids = torch.randint(0, 1000, (2, 40), device="cuda")
    with torch.no_grad():
        full = model(ids).logits.float()
    state = model.allocate_state(2)
    steps = torch.stack([model.step(ids[:, t], state) for t in range(40)], dim=1).float()
    print("decode path:", model.kernel_report()["decode_step"])
    assert rel_err(steps, full) < tol
