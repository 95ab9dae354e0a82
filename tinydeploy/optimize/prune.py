"""Structured pruning: remove whole filters, rebuild a narrower model.

Magnitude sparsity leaves a dense TFLite file just as large, so tinydeploy
prunes structure instead: each block's output filters are ranked by the L1
norm of their weights, the weakest are dropped, and a narrower architecture is
built and given the surviving weights. Blocks tied by a residual Add keep all
their channels (both sides of the Add must match).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tinydeploy.optimize.architectures import Arch, plain_model


def _output_layer(block_index: int, kind: str) -> str:
    return f"b{block_index}_conv" if kind == "conv" else f"b{block_index}_pw"


def prunable_blocks(arch: Arch) -> list[int]:
    """Blocks whose output filters can be pruned independently."""
    tied = set()
    for i, block in enumerate(arch.blocks):
        if block.residual and i > 0:
            tied |= {i, i - 1}
    return [i for i, b in enumerate(arch.blocks) if b.kind != "depthwise" and i not in tied]


def plan(plain, arch: Arch, keep_ratio: float) -> dict[int, np.ndarray]:
    """Which output channels each prunable block keeps: the highest-L1 filters.

    Args:
        plain: the plain (BN-folded) model whose weights are ranked.
        arch: its architecture.
        keep_ratio: share of filters kept in each prunable block (0..1].

    Returns:
        {block index: sorted indices of the kept output channels}.
    """
    keep = {}
    for i in prunable_blocks(arch):
        kernel = plain.get_layer(_output_layer(i, arch.blocks[i].kind)).get_weights()[0]
        l1 = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)
        count = max(4, int(round(arch.blocks[i].filters * keep_ratio)))
        keep[i] = np.sort(np.argsort(-l1, kind="stable")[:count])
    return keep


def prune(plain, arch: Arch, input_shape, n_classes: int, keep_ratio: float):
    """A narrower plain model carrying the surviving weights of ``plain``.

    Returns:
        (the narrower plain model, its Arch, {block: kept channel count}).
    """
    keep = plan(plain, arch, keep_ratio)
    blocks = tuple(replace(b, filters=len(keep[i])) if i in keep else b for i, b in enumerate(arch.blocks))
    narrow_arch = replace(arch, blocks=blocks, name=f"{arch.name}-pruned")
    narrow = plain_model(narrow_arch, input_shape, n_classes)
    in_keep = np.arange(input_shape[-1])
    for i, block in enumerate(arch.blocks):
        out_keep = keep.get(i, None)
        if block.kind == "conv":
            out_keep = out_keep if out_keep is not None else np.arange(block.filters)
            kernel, bias = plain.get_layer(f"b{i}_conv").get_weights()
            narrow.get_layer(f"b{i}_conv").set_weights([kernel[:, :, in_keep][..., out_keep], bias[out_keep]])
        else:
            kernel, bias = plain.get_layer(f"b{i}_dw").get_weights()
            narrow.get_layer(f"b{i}_dw").set_weights([kernel[:, :, in_keep], bias[in_keep]])
            if block.kind == "separable":
                out_keep = out_keep if out_keep is not None else np.arange(block.filters)
                kernel, bias = plain.get_layer(f"b{i}_pw").get_weights()
                narrow.get_layer(f"b{i}_pw").set_weights([kernel[:, :, in_keep][..., out_keep], bias[out_keep]])
            else:
                out_keep = in_keep
        in_keep = out_keep
    first_dense = "head" if arch.head_units else "logits"
    kernel, bias = plain.get_layer(first_dense).get_weights()
    narrow.get_layer(first_dense).set_weights([kernel[in_keep], bias])
    if arch.head_units:
        narrow.get_layer("logits").set_weights(plain.get_layer("logits").get_weights())
    return narrow, narrow_arch, {i: len(k) for i, k in keep.items()}
