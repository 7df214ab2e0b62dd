"""How many rounds each benchmark gets: the minimum of N calls, N from the call's own time.

Measured on the shared 2-core machine (quick grid, CI's environment, the
same code four times): with one round per (case, engine), as the quick
suite used to time, the rnnjit/torch ratio of a case spread by 1.6x (median
max/min over the four runs) and 21 of 32 cases by more than the 25% the
report warns about; single calls of 0.1-2 ms are at the mercy of whatever
else the two cores do in that millisecond (one torch call measured 176 ms
instead of 1 ms). Giving every engine a fixed time budget of calls and
taking the minimum makes short cases as steady as long ones, for little
time: a 1 ms call gets 200 rounds in 0.2 s.

That alone did not steady the ratios on a machine loaded by other jobs
(three quick runs at load 3.5 on 2 cores: still 2.2x median spread), because
the load moves between the seconds rnnjit is timed and the seconds torch is:
the ratio CI compares (`paired_ratio`) therefore alternates the two engines'
calls, so both see the same load, and takes each one's minimum.
"""

from __future__ import annotations

import time

from bench.cases import QUICK

BUDGET_S = 0.15 if QUICK else 1.0  # timed calls per (case, engine), and per pair in `paired_ratio`
MIN_ROUNDS = 5  # calls under a second; 3 above (full grid only)
MAX_ROUNDS = 200


def fresh_back_off() -> None:
    """Clear rnnjit's back-off state (`rnnjit.kernels.team_policy`) before timing rnnjit alone.

    The two-thread team and the wavefront of a batch of one pause for 30 s
    after calls whose caller mostly waited for the other thread, as on a
    busy machine. In a benchmark process that thread's core is taken by the
    threads other engines leave spinning after their calls (torch's OpenMP
    pool, onnxruntime's, OpenVINO's): rnnjit then backs off because of
    engines no user runs beside it. A fresh process starts with the state
    clear; so does each timed rnnjit case here.
    """
    from rnnjit.kernels import team_policy

    team_policy.clear_pauses()


def rounds_for(call_s: float) -> int:
    """Rounds for a call that took ``call_s`` seconds once warm: at least 5 (3 above 1 s), about ``BUDGET_S`` in all."""
    low = MIN_ROUNDS if call_s < 1.0 else 3
    return max(low, min(MAX_ROUNDS, int(BUDGET_S / max(call_s, 1e-6))))


def warm_call_s(fn) -> float:
    """Seconds of one warm call of ``fn`` (after its warm-up): what `rounds_for` sizes the rounds by."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


SETTLE_S = 0.01
"""Pause before each engine's turn in `paired_ratio`: long enough for the other engine's pool threads to stop spinning.

torch's OpenMP threads (libgomp) spin-wait for several milliseconds after a
call, and onnxruntime's pool spins too; on 2 cores a spinning thread holds
the core the next engine's second thread wants. Measured (bench/after_torch.py,
bench/report_notes.md "Variants"): rnnjit's 2-thread call right after torch's
took 1.24-1.60x its time after another rnnjit call (LSTM H=256 B=256 T=20:
11.4 ms instead of 8.4; after 5 ms of pause 10.0, after 10 ms 8.35), and the
same with torch's ``OMP_WAIT_POLICY=PASSIVE`` 0.98-1.03x.
"""

PAIRED_MIN_ROUNDS = 10
"""At least this many turns each in `paired_ratio` for calls under 10 ms (the pauses would leave them ~6)."""


QUIET_WINDOW_S = 0.003
"""Window in which `wait_quiet` measures the CPU the process's other threads use."""

QUIET_WINDOWS = 2
"""Windows in a row that must be quiet: a spinning thread that another process (or, under ``chrt``, the kernel's
real-time throttling) holds off for one window is still spinning."""

QUIET_SHARE = 0.2
"""Share of one core the other threads may use in a `QUIET_WINDOW_S` window for the process to count as quiet."""

QUIET_MAX_S = 0.2
"""Longest `wait_quiet` waits after the settle pause (a process whose threads never stop: give up and time it)."""


def wait_quiet(max_s: float = QUIET_MAX_S) -> float:
    """Sleep in `QUIET_WINDOW_S` windows until the process's other threads used under `QUIET_SHARE` of a core in
    `QUIET_WINDOWS` windows in a row (or ``max_s`` passed); the seconds waited.

    onnxruntime's intra-op threads spin for 30-40 ms after a call, longer
    than `SETTLE_S`: measured as the process's CPU time beside the calling
    thread's (speaker H=256 L=2 B=1, 2 threads, load 2.6, bench/report_notes.md
    "In a process with torch and onnxruntime"): after onnxruntime 0.95 cores
    in the first 10 ms, 0.80 in 10-40 ms, 0.09 after; after torch 0.81, then
    0.09; after rnnjit 0.14, then 0.07. On two cores that spinning thread
    holds the core a two-thread call's second thread needs.
    """
    t_start = time.perf_counter()
    quiet = 0
    while True:
        p0, c0, w0 = time.process_time(), time.thread_time(), time.perf_counter()
        time.sleep(QUIET_WINDOW_S)
        w1 = time.perf_counter()
        other = (time.process_time() - p0) - (time.thread_time() - c0)
        quiet = quiet + 1 if other < QUIET_SHARE * (w1 - w0) else 0
        if quiet >= QUIET_WINDOWS or w1 - t_start >= max_s:
            return w1 - t_start


def settled_call(fn, settle_s: float = SETTLE_S, clock=time.perf_counter) -> float:
    """One engine's turn: a pause of ``settle_s`` and until the process is quiet (`wait_quiet`), an untimed call,
    then the timed call; its seconds by ``clock``."""
    time.sleep(settle_s)
    if settle_s:
        wait_quiet()
    fn()
    t0 = clock()
    fn()
    return clock() - t0


def paired_ratio(fast, slow, call_s: float) -> float:
    """min time of ``slow`` / min time of ``fast``, in alternating turns (`settled_call`), both warm.

    Alternating spreads the machine's load over both engines; each turn
    starts after a pause and an untimed call, so the timed call sees what a
    process running only that engine sees (its own pool warm, no other
    engine's threads spinning on its cores: `SETTLE_S`). ``call_s``: one call
    of each, together.
    """
    best_fast = best_slow = float("inf")
    n = rounds_for(2 * call_s + 2 * SETTLE_S)
    for _ in range(max(n, PAIRED_MIN_ROUNDS) if call_s < 0.01 else n):
        best_fast = min(best_fast, settled_call(fast))
        best_slow = min(best_slow, settled_call(slow))
    return best_slow / best_fast


def time_whole_model(benchmark, engine: str, fn, make_torch, call_s: float, diff: float, atol: float, oracle: str,
                     **info) -> None:  # fmt: skip
    """Time a whole model's warm call ``fn`` (the minimum over `rounds_for`); rnnjit also gets its paired ratio.

    ``diff``: the first call's max abs difference from ``oracle`` (what torch
    computes); rnnjit fails the case beyond ``atol`` (a fast wrong score is
    not a result). ``make_torch()`` gives torch's call, alternated with
    rnnjit's for the ratio CI compares. ``info`` goes to extra_info.
    """
    benchmark.group = info["case"]
    benchmark.extra_info.update(engine=engine, max_abs_diff=diff, **info)
    if engine == "rnnjit":
        assert diff <= atol, f"rnnjit differs from {oracle} by {diff:.2e} (> {atol})"
    # timed alone, before the calls alternated with torch (whose threads spin on after each call), from a
    # clear back-off state (`fresh_back_off`)
    if engine == "rnnjit":
        fresh_back_off()
    benchmark.pedantic(fn, rounds=rounds_for(call_s), iterations=1, warmup_rounds=0)
    if engine == "rnnjit":
        torch_fn = make_torch()
        torch_fn()  # warm-up: torch's first-call setup
        benchmark.extra_info["paired_torch_ratio"] = paired_ratio(fn, torch_fn, call_s + warm_call_s(torch_fn))
