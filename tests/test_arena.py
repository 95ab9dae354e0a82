"""The board arena (tinydeploy.costs.arena): TFLM's memory plan replayed, with each kernel library's scratch."""

import pytest

from tinydeploy.costs import arena, kernels
from tinydeploy.runtime import tflm
from tinydeploy.core.model import load_model, parse_model


def chain(sizes):
    """Buffers of a chain of operators: tensor i is made by operator i and read by operator i + 1."""
    last = len(sizes) - 1
    return [arena.Buffer(f"t{i}", size, i, min(i + 1, last)) for i, size in enumerate(sizes)]


@pytest.mark.unit
def test_greedy_plan_reuses_memory_of_tensors_that_are_gone():
    offsets, head = arena.greedy_plan(chain([1024, 512, 2048, 256]))
    # The largest goes first at 0; its neighbours in time go after it; t0 (dead by then) shares t2's room.
    assert head == 2048 + 512
    assert offsets[2] == 0 and offsets[1] == 2048 and offsets[3] == 2048 and offsets[0] == 0


@pytest.mark.unit
def test_greedy_plan_puts_equal_sizes_later_buffer_first():
    # TFLM fills its sort array from the end and sorts stably: of equal sizes, the later buffer is placed first.
    offsets, head = arena.greedy_plan([arena.Buffer("a", 64, 0, 1), arena.Buffer("b", 64, 0, 1)])
    assert offsets == [64, 0] and head == 128


@pytest.mark.unit
def test_scratch_lives_only_while_its_operator_runs():
    tensors = chain([1024, 1024, 1024])
    with_scratch = tensors + [arena.Buffer("scratch", 4096, 1, 1, op=0)]
    _, head = arena.greedy_plan(with_scratch)
    assert head == 4096 + 2048  # the scratch sits beside the two tensors live at step 1, not on top of all


@pytest.mark.host
def test_replayed_plan_equals_the_measured_head(int8_cnn, tmp_path):
    """With the reference kernels' requests, the replayed plan is exactly the head the host's TFLM
    measures, for every model of the kernel zoo (strides, paddings, multipliers, pools, pads, MEAN)."""
    from tests import models
    checked = [load_model(int8_cnn)] + [parse_model(data, name) for name, data in models.kernel_zoo().items()]
    for model in checked:
        measured = tflm.measure_arena(model)
        _, head = arena.greedy_plan(arena.buffers(model, kernels.library("reference")))
        assert head == measured.head_bytes, model.path
        need = arena.board_arena(model, measured, kernels.library("esp-nn-s3"))
        assert need.head_bytes >= head  # the S3's scratch can only add to it
        reference = arena.board_arena(model, measured, kernels.library("reference"))
        assert reference.tail_bytes < measured.tail_bytes  # 32-bit structs are smaller
