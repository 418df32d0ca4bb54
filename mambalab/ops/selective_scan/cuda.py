"""mamba_ssm's CUDA selective scan behind mambalab's signature."""
from __future__ import annotations


def selective_scan_cuda(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=True,
                        initial_state=None, doc_starts=None, return_last_state=False):
    """mamba_ssm.ops.selective_scan_interface.selective_scan_fn; shapes as selective_scan_ref."""
    if initial_state is not None or doc_starts is not None:
        # mamba_ssm's Mamba-1 kernel starts every sequence from h = 0 and has no reset input.
        raise ValueError(
            "selective_scan impl=cuda (mamba_ssm) supports neither initial_state nor doc_starts; "
            "use impl='reference' or impl='triton' for carried state or document resets")
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    out = selective_scan_fn(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
                            delta_softplus=delta_softplus, return_last_state=return_last_state)
    if return_last_state:
        y, last_state = out
        return y, last_state.float()
    return out
