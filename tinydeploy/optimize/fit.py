"""Shrink to fit: the largest model of an architecture's family that meets the budgets.

Optimize's seek stage (a model that misses a cost target) and search (a sampled candidate
over a budget) both shrink an architecture this way, each with its own cost and its own
idea of fitting: the width multiplier is searched by bisection on a log scale between
MIN_WIDTH and 1; when even the narrowest misses, the first block's stride doubles (up to
MAX_STRIDE, while the input stays at least 4 long), and then, if asked, the last blocks go.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Generic, Iterator, TypeVar

import numpy as np

from tinydeploy.core.data import Dataset
from tinydeploy.optimize.architectures import Arch

MIN_WIDTH = 0.125  # the narrowest width multiplier tried
STEPS = 5  # bisection steps on the width: the answer is within a factor (1 / MIN_WIDTH) ** (1 / 2 ** STEPS) = 1.07
MAX_STRIDE = 8  # the first block's stride doubles up to this

Cost = TypeVar("Cost")


@dataclass
class Fitted(Generic[Cost]):
    """The widest fitting member of a family: the family (stride and depth), its width, its cost."""
    family: Arch
    width: float
    cost: Cost

    @property
    def arch(self) -> Arch:
        return self.family.scaled(self.width) if self.width < 1.0 else self.family


def widest_fitting(fits: Callable[[float], bool], low: float, steps: int = STEPS) -> float:
    """The largest width multiplier in [low, 1) that fits, by bisection on a log scale.

    Args:
        fits: width -> does the architecture scaled by it meet the budgets?
        low: a width known to fit.
        steps: bisection steps (each calls fits once).

    Returns:
        The widest width found to fit (low when none wider did).
    """
    high = 1.0
    for _ in range(steps):
        middle = float(np.sqrt(low * high))
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def families(arch: Arch, data: Dataset, drop_blocks: bool) -> Iterator[Arch]:
    """The architecture, then ever cheaper variants: the first stride doubled up to MAX_STRIDE
    (while the input's shortest side stays at least 4 long), then, with drop_blocks, the same
    with the last block dropped, and so on down to one block."""
    first = arch.blocks[0]
    shortest = min(data.input_shape[:2] if data.kind == "image" else data.input_shape[:1])
    strides = [first.stride]
    while strides[-1] * 2 <= MAX_STRIDE and shortest // (strides[-1] * 2) >= 4:
        strides.append(strides[-1] * 2)
    for depth in range(len(arch.blocks), 0 if drop_blocks else len(arch.blocks) - 1, -1):
        for stride in strides:
            blocks = (replace(first, stride=stride), *arch.blocks[1:depth])
            yield replace(arch, blocks=blocks, name=f"{arch.name}-s{stride}-d{depth}")


def shrink_to_fit(arch: Arch, data: Dataset, cost: Callable[[Arch], Cost], fits: Callable[[Cost], bool],
                  drop_blocks: bool) -> Fitted[Cost] | None:
    """The largest model of arch's family that fits, arch itself known to miss.

    In each family (families()) the narrowest is costed first: when it misses, the next, cheaper
    family is tried. A family other than arch's own is then costed at full width, and taken
    whole when that fits; otherwise the width is bisected (widest_fitting).

    Args:
        arch: the architecture that misses.
        data: its data (the input's shortest side bounds the stride).
        cost: an architecture -> its cost (called once per architecture tried, in order).
        fits: a cost -> does it meet the budgets?
        drop_blocks: whether the last blocks may go once every stride misses.

    Returns:
        The widest member that fits, or None when even the smallest misses.
    """
    for family in families(arch, data, drop_blocks):
        costs: dict[float, Cost] = {}

        def fitting(width: float, family: Arch = family) -> bool:
            costs[width] = cost(family.scaled(width))
            return fits(costs[width])

        if not fitting(MIN_WIDTH):
            continue  # even the narrowest of this family misses: a lower resolution or fewer blocks next
        if (family.blocks, family.head_units) != (arch.blocks, arch.head_units):
            whole = cost(family)
            if fits(whole):
                return Fitted(family, 1.0, whole)
        width = widest_fitting(fitting, MIN_WIDTH)
        return Fitted(family, width, costs[width])
    return None
