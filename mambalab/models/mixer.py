"""The Mamba-1 mixer: in_proj -> causal conv -> selective scan gated by z -> out_proj."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from mambalab.ops.causal_conv1d import causal_conv1d
from mambalab.ops.dispatch import unavailable_reason
from mambalab.ops.mamba_inner import mamba_inner, mamba_inner_ref

# The in_proj output layout the Triton mixer gets: "dbl" (a (2D, B*L) matrix, as mamba_ssm; no
# transposing copies in the mixer) or "channel_last" (a (B, L, 2D) output; the scan then copies
# its inputs: 1.2 ms more per layer at B=8 on an H100). A module constant so that
# scripts/ab_scan_impl.py can time both; see mambalab/ops/triton/mamba_inner.py.
TRITON_XZ_LAYOUT = "dbl"
from mambalab.ops.selective_scan import selective_scan


def stateful_impl(op: str, impl: str, device: torch.device) -> str:
    """The implementation used when state is carried: mamba_ssm's Mamba-1 kernels cannot take an
    initial state, so a cuda choice falls back to triton where it runs, else to the reference."""
    if impl != "cuda":
        return impl
    return "triton" if unavailable_reason(op, "triton", device) is None else "reference"


class MambaMixer(nn.Module):
    """Parameters named and shaped as mamba_ssm's ``Mamba`` (Mamba-1): in_proj, conv1d, x_proj,
    dt_proj, A_log, D, out_proj. Initialisation lives in ``mambalab.models.init``."""

    def __init__(self, d_model: int, d_inner: int, d_state: int, d_conv: int, dt_rank: int):
        super().__init__()
        self.d_inner, self.d_state, self.d_conv, self.dt_rank = d_inner, d_state, d_conv, dt_rank
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, kernel_size=d_conv, groups=d_inner,
                                padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        self.A_log = nn.Parameter(torch.empty(d_inner, d_state))        # A = -exp(A_log)
        self.D = nn.Parameter(torch.ones(d_inner))
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def forward(self, hidden: torch.Tensor, kernels: dict[str, str],
                doc_starts: torch.Tensor | None = None,
                conv_state: torch.Tensor | None = None,
                ssm_state: torch.Tensor | None = None) -> torch.Tensor:
        """hidden (B, L, d_model) -> (B, L, d_model); states (see MambaState) updated in place."""
        batch, seq_len, d_model = hidden.shape
        A = -torch.exp(self.A_log.float())                               # (D, N)
        weights = (self.conv1d.weight, self.conv1d.bias, self.x_proj.weight, self.dt_proj.weight,
                   self.out_proj.weight, self.out_proj.bias, A, self.D.float(),
                   self.dt_proj.bias.float())
        if ssm_state is None:
            impl = kernels["mamba_inner"]
            if impl == "cuda" or (impl == "triton" and TRITON_XZ_LAYOUT == "dbl"):
                # mamba_ssm's layout: (2D, B*L) product viewed as (B, 2D, L) with unit stride in L,
                # which mamba_inner_fn and the Triton mixer consume without a copy.
                xz = (self.in_proj.weight @ hidden.reshape(batch * seq_len, d_model).t())
                xz = xz.view(2 * self.d_inner, batch, seq_len).permute(1, 0, 2)
            else:
                xz = self.in_proj(hidden).transpose(1, 2)                # (B, 2D, L)
            if impl in ("cuda", "triton"):
                return mamba_inner(xz, *weights, doc_starts=doc_starts, impl=impl)
            return mamba_inner_ref(xz, *weights, doc_starts=doc_starts,
                                   conv_impl=kernels["causal_conv1d"],
                                   scan_impl=kernels["selective_scan"])
        return self._forward_stateful(hidden, kernels, doc_starts, conv_state, ssm_state, A)

    def _forward_stateful(self, hidden, kernels, doc_starts, conv_state, ssm_state, A):
        """The unfused path that starts from, and writes back, the carried state."""
        device = hidden.device
        conv_impl = stateful_impl("causal_conv1d", kernels["causal_conv1d"], device)
        scan_impl = stateful_impl("selective_scan", kernels["selective_scan"], device)
        x, z = self.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)     # (B, D, L) each
        # Clones: autograd may save the initial states, and they are overwritten below.
        x, conv_final = causal_conv1d(x, self.conv1d.weight, self.conv1d.bias, activation="silu",
                                      initial_state=conv_state[:, :, 1:].clone(),
                                      doc_starts=doc_starts, return_final_state=True,
                                      impl=conv_impl)
        x_dbl = F.linear(x.transpose(1, 2), self.x_proj.weight)         # (B, L, R + 2N)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight).transpose(1, 2)       # (B, D, L)
        y, last = selective_scan(x, delta, A, B.transpose(1, 2), C.transpose(1, 2),
                                 D=self.D.float(), z=z, delta_bias=self.dt_proj.bias.float(),
                                 delta_softplus=True, initial_state=ssm_state.clone(),
                                 doc_starts=doc_starts, return_last_state=True, impl=scan_impl)
        with torch.no_grad():  # the carried state is detached: truncated backprop across calls
            conv_state[:, :, 1:].copy_(conv_final)
            ssm_state.copy_(last)
        return F.linear(y.transpose(1, 2), self.out_proj.weight, self.out_proj.bias)

    @torch.no_grad()
    def step(self, hidden: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor,
             fused: bool = False) -> torch.Tensor:
        """One token: hidden (B, d_model) -> (B, d_model); states updated in place.

        ``fused``: mamba_ssm's decoding kernels (causal_conv1d_update, selective_state_update),
        a few launches per layer instead of a dozen; else plain PyTorch.
        """
        x, z = self.in_proj(hidden).chunk(2, dim=-1)                     # (B, D) each
        if fused:
            return self._step_fused(x, z, conv_state, ssm_state, hidden.dtype)
        conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=-1))
        conv_state[:, :, -1] = x
        x = (conv_state.float() * self.conv1d.weight[:, 0, :].float()).sum(-1)  # (B, D)
        x = F.silu(x + self.conv1d.bias.float()).to(hidden.dtype)
        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(F.linear(dt, self.dt_proj.weight).float() + self.dt_proj.bias.float())
        A = -torch.exp(self.A_log.float())                               # (D, N)
        dA = torch.exp(delta[:, :, None] * A)                            # (B, D, N)
        dBx = delta[:, :, None] * B.float()[:, None, :] * x.float()[:, :, None]
        ssm_state.copy_(ssm_state * dA + dBx)
        y = torch.einsum("bdn,bn->bd", ssm_state, C.float()) + self.D.float() * x.float()
        y = y * F.silu(z.float())
        return self.out_proj(y.to(hidden.dtype))

    def _step_fused(self, x, z, conv_state, ssm_state, dtype):
        from causal_conv1d import causal_conv1d_update
        from mamba_ssm.ops.triton.selective_state_update import selective_state_update

        x = causal_conv1d_update(x, conv_state, self.conv1d.weight[:, 0, :], self.conv1d.bias,
                                 "silu")                                  # (B, D)
        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight)                           # (B, D)
        A = -torch.exp(self.A_log.float())
        y = selective_state_update(ssm_state, x, dt, A, B, C, self.D.float(), z=z,
                                   dt_bias=self.dt_proj.bias.float(), dt_softplus=True)
        return self.out_proj(y.to(dtype))


def reset_mixer_parameters(mixer: MambaMixer, dt_min: float = 1e-3, dt_max: float = 1e-1,
                           dt_init_floor: float = 1e-4, dt_scale: float = 1.0) -> None:
    """mamba_ssm's Mamba.__init__: dt_proj and the S4D-real A, D = 1."""
    with torch.no_grad():
        std = mixer.dt_rank ** -0.5 * dt_scale
        nn.init.uniform_(mixer.dt_proj.weight, -std, std)
        # dt log-uniform in [dt_min, dt_max]; the bias is its inverse softplus, so that
        # softplus(bias) = dt at init.
        dt = torch.exp(torch.rand(mixer.d_inner) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=dt_init_floor)
        mixer.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        mixer.dt_proj.bias._no_reinit = True
        A = torch.arange(1, mixer.d_state + 1, dtype=torch.float32).repeat(mixer.d_inner, 1)
        mixer.A_log.copy_(torch.log(A))
        mixer.D.fill_(1.0)
