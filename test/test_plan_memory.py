"""The arena planner is a pure function: buffers alive at the same time never overlap, and the
arena is at least the bytes live at once."""

from bertc.passes.plan_memory import ALIGN, Buffer, plan_arena
from hypothesis import given
from hypothesis import strategies as st

buffers = st.lists(st.builds(lambda size, first, length: Buffer(size, first, first + length),
                             st.integers(1, 5000), st.integers(0, 30), st.integers(0, 10)), max_size=40)


@given(buffers)
def test_live_buffers_never_overlap(bufs):
    plan = plan_arena(bufs)
    for i, a in enumerate(bufs):
        assert plan.offsets[i] % ALIGN == 0
        assert plan.offsets[i] + a.size <= plan.arena_bytes
        for j, b in enumerate(bufs[:i]):
            if a.first <= b.last and b.first <= a.last:
                lo_a, lo_b = plan.offsets[i], plan.offsets[j]
                assert lo_a + a.size <= lo_b or lo_b + b.size <= lo_a


@given(buffers)
def test_arena_holds_the_live_peak(bufs):
    plan = plan_arena(bufs)
    assert plan.arena_bytes >= plan.live_peak_bytes
    for t in {b.first for b in bufs}:
        assert plan.live_peak_bytes >= sum(b.size for b in bufs if b.first <= t <= b.last)


def test_reuse_after_last_use():
    # a dies before c is born: c reuses a's slot.
    plan = plan_arena([Buffer(256, 0, 1), Buffer(256, 1, 2), Buffer(256, 2, 3)])
    assert plan.offsets[0] == plan.offsets[2]
    assert plan.arena_bytes == 512
