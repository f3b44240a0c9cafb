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


# A dynamic-length module (issue 17) is planned once, at its bound N, with each buffer's size a
# polynomial in the run's length L with non-negative coefficients (rows * width, heads * L * L). Such a
# size only grows with L, so this holds by construction: at any L <= N each buffer fits in its slot and
# buffers alive together stay apart. The property pins that the planner gives no slot less than asked.
polynomials = st.tuples(st.integers(0, 64), st.integers(0, 64), st.integers(0, 4))  # c0 + c1*L + c2*L*L
dynamic = st.lists(st.tuples(polynomials, st.integers(0, 30), st.integers(0, 10)), max_size=30)


@given(dynamic, st.integers(1, 64), st.data())
def test_a_plan_at_the_bound_holds_every_length(bufs, bound, data):
    size = lambda c, n: c[0] + c[1] * n + c[2] * n * n
    plan = plan_arena([Buffer(max(1, size(c, bound)), first, first + length) for c, first, length in bufs])
    n = data.draw(st.integers(1, bound))
    at_n = [(plan.offsets[i], plan.offsets[i] + size(c, n), first, first + length)
            for i, (c, first, length) in enumerate(bufs)]
    for i, (lo_a, hi_a, first_a, last_a) in enumerate(at_n):
        assert hi_a <= plan.arena_bytes
        for lo_b, hi_b, first_b, last_b in at_n[:i]:
            if first_a <= last_b and first_b <= last_a:
                assert hi_a <= lo_b or hi_b <= lo_a
