"""Pauses of teams and waves (`rnnjit.kernels.team_policy`): short after good runs, doubling while runs stay bad;
and the benchmark's wait for the process's other threads to stop spinning (`bench.timing.wait_quiet`)."""

from __future__ import annotations

import numpy as np
import pytest
from test_kernels import build

from rnnjit.kernels import team_policy as tp

OVER_L2 = tp.L2_BYTES + 1


class Clock:
    """A stand-in for `time.monotonic` in `team_policy`: time moves only when the test says."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(tp.time, "monotonic", c)
    return c


@pytest.fixture
def spec():
    return build("lstm", 5, 256, 1, False, True, np.float32)[1]


def test_pause_seconds_double_from_the_first_pause_up_to_team_pause():
    got = [tp.pause_seconds(n) for n in range(8)]
    assert got[0] == tp.FIRST_PAUSE
    assert all(b == min(tp.TEAM_PAUSE, 2 * a) for a, b in zip(got, got[1:]))
    assert got[-1] == tp.TEAM_PAUSE
    assert tp.pause_seconds(10_000) == tp.TEAM_PAUSE  # no overflow however long the machine stays busy


def test_stalls_in_a_row_double_the_pause_and_a_shared_run_starts_it_over(clock, spec):
    stalled = tp.STALL_SPINS * 10 + 1
    for n in range(3):  # a stall each time the pause ends: 1, 2, 4 s
        assert tp.team_chunks(spec, 1, 2, OVER_L2) is not None
        tp.note_spins(stalled, 10)
        tp.note_alone(False)  # the helper joined, but the run stalled: the doubling goes on
        tp.end_call()
        clock.now += tp.pause_seconds(n) - 0.01
        assert tp.team_chunks(spec, 1, 2, OVER_L2) is None
        clock.now += 0.02
    assert tp.team_chunks(spec, 1, 2, OVER_L2) is not None
    tp.note_spins(0, 10)
    tp.note_alone(False)  # a run both threads shared without a stall
    tp.end_call()
    tp.note_spins(stalled, 10)
    clock.now += tp.FIRST_PAUSE + 0.01  # the next pause is the first one again
    assert tp.team_chunks(spec, 1, 2, OVER_L2) is not None


def _call(*alone):
    """One call's team runs (one per layer), each alone or not, then the call's end."""
    for a in alone:
        tp.note_spins(0, 10)
        tp.note_alone(a)
    tp.end_call()


def test_alone_calls_pause_teams_for_the_first_pause_then_longer(clock, spec):
    for n in range(2):
        for _ in range(tp.ALONE_STRIKES):
            assert tp.team_chunks(spec, 1, 2, OVER_L2) is not None
            _call(True)
        assert tp.team_chunks(spec, 1, 2, OVER_L2) is None
        clock.now += tp.pause_seconds(n) + 0.01
    assert tp._team_pauses == 2


def test_a_call_whose_helper_joins_a_later_layer_is_no_strike_and_three_alone_layers_are_one(clock, spec):
    for _ in range(tp.ALONE_STRIKES - 1):
        _call(True, True, True)  # a helper woken from sleep that missed all three layers of a stack: one strike each
    _call(True, False, True)  # joined the second layer: the count starts over
    for _ in range(tp.ALONE_STRIKES - 1):
        _call(True, True, True)
    assert tp.team_chunks(spec, 1, 2, OVER_L2) is not None
    _call()  # a call without teams (a wavefront, or teams paused) neither strikes nor clears
    _call(True, True)
    assert tp.team_chunks(spec, 1, 2, OVER_L2) is None


def test_waves_pause_the_same_way(clock):
    stack = build("lstm", 5, 128, 2, False, True, np.float32)[1]

    def paused():
        return tp.wavefront_workers(stack, True, 2, 1e12) == 0

    for n in range(2):
        for _ in range(tp.WAVE_STRIKES):
            assert not paused()
            tp.note_wave(1.0, 2.0)  # the caller waited twice as long as it ran
        assert paused()
        clock.now += tp.pause_seconds(n) - 0.01
        assert paused()
        clock.now += 0.02
    tp.note_wave(1.0, 0.1)  # a good wave clears the doubling
    for _ in range(tp.WAVE_STRIKES):
        tp.note_wave(1.0, 2.0)
    clock.now += tp.FIRST_PAUSE + 0.01
    assert not paused()


class Process:
    """Stand-ins for `time` in `bench.timing`: another thread of the process uses a core until ``spin_until``
    (except in the windows listed in ``held_off``), the calling thread nothing."""

    def __init__(self, spin_until, held_off=()):
        self.t, self.cpu, self.spin_until, self.held_off = 0.0, 0.0, spin_until, set(held_off)
        self.windows = 0

    def sleep(self, s):
        if self.t < self.spin_until and self.windows not in self.held_off:
            self.cpu += s
        self.windows += 1
        self.t += s

    def perf_counter(self):
        return self.t

    def process_time(self):
        return self.cpu

    def thread_time(self):
        return 0.0


def _fake(monkeypatch, proc):
    import bench.timing as timing

    for name in ("sleep", "perf_counter", "process_time", "thread_time"):
        monkeypatch.setattr(timing.time, name, getattr(proc, name))


def test_wait_quiet_waits_out_a_spinning_thread(monkeypatch):
    from bench.timing import QUIET_WINDOW_S, QUIET_WINDOWS, wait_quiet

    proc = Process(spin_until=0.03)
    _fake(monkeypatch, proc)
    waited = wait_quiet(max_s=0.2)
    assert 0.03 <= waited <= 0.03 + (QUIET_WINDOWS + 1) * QUIET_WINDOW_S


def test_wait_quiet_is_not_fooled_by_one_window_the_spinner_was_held_off(monkeypatch):
    from bench.timing import wait_quiet

    proc = Process(spin_until=0.03, held_off={0, 3})  # descheduled in two single windows
    _fake(monkeypatch, proc)
    assert wait_quiet(max_s=0.2) >= 0.03


def test_wait_quiet_returns_at_once_when_nothing_spins_and_gives_up_on_a_thread_that_never_stops(monkeypatch):
    from bench.timing import QUIET_WINDOW_S, QUIET_WINDOWS, wait_quiet

    _fake(monkeypatch, Process(spin_until=0.0))
    assert wait_quiet(max_s=0.2) == pytest.approx(QUIET_WINDOWS * QUIET_WINDOW_S)
    _fake(monkeypatch, Process(spin_until=float("inf")))
    assert 0.2 <= wait_quiet(max_s=0.2) < 0.2 + 2 * QUIET_WINDOW_S
