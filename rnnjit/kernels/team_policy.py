"""When one tile runs as a team of threads (`team`) or a stack of layers as a wavefront (`wavefront`), and pauses.

Both pause on a busy machine (`note_spins`, `note_wave`).

The measurements behind the constants are in bench/report_notes.md ("Tiling and
team constants"), each under the constant's name.
"""

from __future__ import annotations

import time

from rnnjit.kernels._simd import FEW, MR, P_ROWS
from rnnjit.kernels.pack import padded_hidden
from rnnjit.spec import RNNSpec

STALL_SPINS = 300
"""Spin-wait rounds per step above which a team run counts as stalled (another process had a core)."""

TEAM_PAUSE = 30.0
"""Longest pause (seconds) of teams after a stalled team run, and of waves (`note_wave`), before they are tried again.

A team waits for every chunk of a step before the next: when another
process takes one of the cores, a claimed chunk can wait a whole scheduler
time slice, so a stalled run (`note_spins`) turns teams off for a while.
The first pause is `FIRST_PAUSE` long (`pause_seconds`).
"""

FIRST_PAUSE = 1.0
"""Seconds of the first pause after teams (or waves) last ran well; each pause that follows with no good run
between doubles, up to `TEAM_PAUSE` (`pause_seconds`).

What takes the second core is often brief: onnxruntime's intra-op threads
spin for 30-40 ms after each of its calls, torch's libgomp threads ~10 ms
(bench/report_notes.md, "In a process with torch and onnxruntime"). A
process that calls them beside rnnjit paused its teams for 30 s on the
first three alone runs, and ran a batch of one on one thread for the 30 s
after the other engine's last call. A busy machine still reaches the 30 s
pause after five pauses in a row, each costing one stalled run or
`ALONE_STRIKES` alone ones.
"""

_team_paused_until = 0.0
_team_pauses = 0  # pauses of teams since a team run both threads shared without a stall


def pause_seconds(pauses: int) -> float:
    """Seconds of a pause after ``pauses`` pauses in a row: `FIRST_PAUSE`, doubled each time, at most `TEAM_PAUSE`."""
    return min(TEAM_PAUSE, FIRST_PAUSE * 2.0 ** min(pauses, 32))


def _pause_teams() -> None:
    global _team_paused_until, _team_pauses
    _team_paused_until = time.monotonic() + pause_seconds(_team_pauses)
    _team_pauses += 1

L2_BYTES = 1 << 20
"""One core's L2 cache on the reference machine (AMD EPYC, Zen 5): packed weights up to this size stay in it between steps."""


def team_chunks(spec: RNNSpec, bt: int, threads: int, weight_bytes: int = 0, tiles: int = 1) -> tuple[int, int] | None:
    """(unit blocks per chunk, chunks per step) when one tile should run on ``threads`` (`team`), else None.

    A team needs two threads and no projection; a one-sequence tile, chunks of whole row-kernel
    calls (P_ROWS blocks of MR units). FEW-sequence tiles of other widths (H=150, 200) run one chunk
    per thread cut at any unit block: each chunk computes the whole vectors of rows its units fall in
    (`rnnjit.kernels.team.few_rows`), into its own gate buffer (LSTM 200->200, B=12, T=375, 2
    threads: 10.45 ms as tiles per thread, 8.80 as a team; bench/report_notes.md, "Batches of 2-16
    of long sequences"). A batch of one runs
    as a team when what a step reads (``weight_bytes``: the h columns, its
    inputs being projected first) is at least `TEAM_MIN_BYTES`, except a
    one-directional stack whose weights fit in one core's L2 (`L2_BYTES`),
    which runs as a wavefront (`wavefront_workers`); a batch of one in L2
    runs as a team while teams have been measured faster (`b1_team`). Up to `FEW_TEAM_TILES`
    FEW-sequence tiles (``tiles`` of them) run as one team when their weights are over `FEW_TEAM_BYTES`; a
    one-directional stack runs so with two tiles or more (`FEW_STACK_TILES`), or one over `FEW_TEAM_EVEN_BYTES`.
    With the second thread kept hot (`rnnjit.kernels.hot`) a team starts in ~1 us instead of the
    pool's ~50, and each core reads half the weights per step from its own
    L2 (measured: bench/report_notes.md, `L2_BYTES` and `TEAM_MIN_BYTES`).
    """
    if threads < 2 or spec.proj_size or time.monotonic() < _team_paused_until:
        return None
    ub = padded_hidden(spec.hidden_size) // MR
    if bt == 1:
        if ub % P_ROWS or weight_bytes < TEAM_MIN_BYTES:
            return None
        if weight_bytes <= L2_BYTES and (spec.num_layers > 1 and spec.num_directions == 1 or not b1_team(weight_bytes)):
            return None
        return P_ROWS, ub // P_ROWS
    if bt == FEW:  # FEW tiles of a batch of 2-16 over L2 (`rnnjit.kernels`'s plan); one tile of a stack up to
        # `FEW_TEAM_EVEN_BYTES`: a wavefront
        stack = spec.num_layers > 1 and spec.num_directions == 1
        if weight_bytes <= FEW_TEAM_BYTES:
            return None
        if stack and tiles < FEW_STACK_TILES and weight_bytes <= FEW_TEAM_EVEN_BYTES:
            return None
        if ub % P_ROWS == 0:
            return P_ROWS, ub // P_ROWS
        # other widths: one chunk per thread, cut at whole vectors of rows where the width allows
        cb = -(-ub // threads)
        cb += cb % 2 if (cb + cb % 2) * (threads - 1) < ub else 0
        return cb, -(-ub // cb)
    cb = max(1, ub // (2 * threads))
    return cb, -(-ub // cb)


FEW_TEAM_BYTES = L2_BYTES
"""Weight bytes a FEW-sequence tile reads per step above which, alone in its plan, it runs as a team (`team_chunks`).

Each thread then reads its chunks' rows (P_ROWS unit blocks of every gate,
the same `mk_rows_grouped_few` calls as the one-thread tile) from L3, half
the weights, not all of them. Measured (T=100, 2 threads, `chrt -f 1`, ms,
one thread's FEW tile / FEW team): LSTM H=256 B=4 2.16 / 1.35, H=384 B=4
5.05 / 2.92, H=512 B=3 8.20 / 4.76, GRU H=384 B=4 4.96 / 2.83, LSTM H=1024
B=4 72.0 / 71.6 (33 MB: L3 itself is the limit). A stack of two LSTM H=384
runs faster as a wavefront (5.89 ms against 6.42 as teams layer after layer).
A batch of two that the tile cost model puts in one-sequence tiles, one per
thread, runs as this team instead while there is one (`rnnjit.kernels`'s
plan): LSTM H=384 B=2 2.85 / 2.56 ms, H=512 5.12 / 4.32 (the same run);
through `Model.predict`, LSTM 64->384, T=100, 4.56 / 2.87 ms.
"""

FEW_STACK_TILES = 2
"""Fewest FEW-sequence tiles of a one-directional stack that run as one team per layer, layer after layer
(`team_chunks`).

One tile of a stack runs as a wavefront (its layers at once, `wavefront_workers`): LSTM H=384 x2, B=4,
5.89 ms against 6.42 as teams layer after layer (`FEW_TEAM_BYTES`). Two tiles or more cannot run as a
wavefront (one tile only); they ran a tile per thread, each thread reading all of a layer's weights from L3
every step. As one team per layer, each thread reads half of them (measured: bench/report_notes.md,
"Stacks and bidirectional layers at batches of 2-16"). A single tile whose weights are over
`FEW_TEAM_EVEN_BYTES` runs as a team too, and a batch of two that the cost model puts in one-sequence tiles
as that team (`rnnjit.kernels`'s plan): LSTM 40->384 x3 and 40->512 x2, T=160, B=3 wavefront 21.0 / 22.3
ms, teams 17.6 / 18.9; B=2 one-sequence tiles 26.2 / 31.6, teams 18.1 / 19.1; at 40->256 (2.1 MB) the
wavefront was as fast or faster (`chrt -f 1`, load 5-6.5, interleaved).
"""

FEW_TEAM_TILES = 4
"""Most FEW-sequence tiles one team runs side by side (a batch of up to this many times FEW; `team_chunks`).

Each thread computes its chunks' rows for every tile in turn (the rows stay
in its L2 between tiles), so it reads half the weights per step, where a
tile per thread reads all of them. Measured (T=100, 2 threads, `chrt -f 1`,
ms, a FEW tile per thread / one team; I=H unless said): LSTM H=384 B=6 5.19
/ 4.55, B=8 5.51 / 4.62, B=12 10.23 / 6.52 (three tiles: 2 + 1 per thread
against 1.5 each), B=16 10.19 / 8.94; H=512 B=8 9.79 / 9.33; GRU H=384 B=8
5.49 / 5.07; LSTM H=1024 B=8 73.3 / 49.4; but LSTM H=256 B=8 2.37 / 2.58,
GRU H=256 B=16 4.63 / 4.70, LSTM 64->384 B=8 2.97 / 3.09: the FEW kernel
is then bound by its products, not by L3, and the team only adds its
hand-off per step (`FEW_TEAM_EVEN_BYTES`).
"""

FEW_TEAM_EVEN_BYTES = 3 << 20
"""Weight bytes per step above which a whole number of FEW tiles per thread (B=8 on two threads) runs as a team too
(`FEW_TEAM_TILES`): below it (H=256: 2.1 MB, 64->384: 2.8 MB) the tiles per thread were as fast or faster, above it
(GRU H=384: 3.5 MB, LSTM H=384: 4.7 MB) the team was faster. A number of tiles the threads cannot share
evenly, or a single tile, runs as a team from `FEW_TEAM_BYTES`. A bidirectional layer whose FEW tiles run as teams
over this size runs its directions in turn, each as a team, not one direction per thread (`rnnjit.kernels`'s
`_run_layers`): OCR head H=384 (3.9-4.7 MB a direction) B=4-16 1.05-1.15x through `Model.predict`."""

TEAM_MIN_BYTES = 192 << 10
"""Weight bytes a batch of one reads per step from which it runs as a team (`team_chunks`).

Measured (T=1000, `chrt -f 1`, ns per step, one thread / hot team): LSTM
H=64 (65 KB) 613 / 693; H=96 (145 KB) 1085 / 1092; H=128 (258 KB) 1732 /
1293; RNN tanh H=256 (257 KB) 1622 / 1289.
"""


def note_spins(spins: int, steps: int) -> None:
    """Pause teams (`pause_seconds`) when a team run waited more than `STALL_SPINS` rounds per step."""
    if spins > STALL_SPINS * steps:
        _pause_teams()


PROBE_EVERY = 16
"""A batch of one whose weights fit in L2 runs the way not in favour (`b1_team`) once every this many calls."""

_b1_seconds: dict = {}  # weight bytes -> [team seconds per step, one thread's, calls], averaged (`note_b1`)


def b1_team(weight_bytes: int) -> bool:
    """Whether a batch of one reading ``weight_bytes`` per step, in L2, runs as a team this call.

    In L2 the team's gain is a core's L2 bandwidth against the hand-off of
    every step, and the hand-off depends on where the two threads run. The
    same process measured (LSTM H=128, T=1000, `chrt -f 1`, load 5-7, ns per
    step, one thread / team) 1759 / 1315 and a minute later 1786 / 2290:
    when the machine's two cores share one physical core's units (this
    machine is a virtual one) the team loses. So each way's time per step
    is kept (`note_b1`), the faster runs, and the other is tried again once
    every `PROBE_EVERY` calls (first the team, then one thread, once each).
    """
    st = _b1_seconds.setdefault(weight_bytes, [0.0, 0.0, 0])
    st[2] += 1
    if not st[0] or not st[1]:
        return not st[0]
    return (st[0] < st[1]) != (st[2] % PROBE_EVERY == 0)


def note_b1(weight_bytes: int, team: bool, seconds_per_step: float) -> None:
    """Fold a batch of one's time per step into its way's average (`b1_team`): a faster call counts at once,
    a slower one for a third (a call slowed by another process does not turn the choice)."""
    st = _b1_seconds.get(weight_bytes)
    if st is None:
        return
    i = 0 if team else 1
    old = st[i]
    st[i] = seconds_per_step if not old else min(seconds_per_step, (2 * old + seconds_per_step) / 3)


ALONE_STRIKES = 3
"""Calls in a row whose team runs one thread ran alone (the other never joined) before teams pause
(`pause_seconds`).

A team's kernel on one thread is slower than the one-thread worker (its
input projection comes first, its steps claim chunks): LSTM H=128, batch
of one, T=100, 232-238 us against 189-192, measured at load average 5
without real-time priority, where the hot helper (`rnnjit.kernels.hot`),
having given its core away while idle, never got it back in time. One
such call is a helper woken from sleep; three in a row is a busy machine.
Counted per call (`end_call`), not per team run: a stack of three layers
over L2 runs three teams a call, and at load 10 a helper woken from sleep
missed all three of the call's first (the real speaker encoder's batch of
one, twelve windows out of twelve, bench/report_notes.md "In a process
with torch and onnxruntime"), which paused teams after one call.
"""

_alone_strikes = 0
_call_runs = [0, 0]  # team runs of the call under way: [run alone, shared]


def note_alone(alone: bool) -> None:
    """Note a team run that one thread ran ``alone`` (`end_call` counts the call). A run the team shared
    starts the doubling of the pauses over, unless it stalled (`note_spins`, called first)."""
    global _team_pauses
    _call_runs[0 if alone else 1] += 1
    if not alone and time.monotonic() >= _team_paused_until:
        _team_pauses = 0


def end_call() -> None:
    """At the end of a call: a call whose team runs all ran alone is a strike, after `ALONE_STRIKES` in a row
    teams pause (`pause_seconds`); a call with a shared team run clears the count; a call without teams
    leaves it."""
    global _alone_strikes
    alone, shared = _call_runs
    _call_runs[0] = _call_runs[1] = 0
    if alone or shared:
        _alone_strikes, pause = _strike(_alone_strikes, not shared, ALONE_STRIKES)
        if pause:
            _pause_teams()


def _strike(count: int, bad: bool, limit: int) -> tuple[int, bool]:
    """A count of bad runs in a row after one more run: (the new count, whether it reached ``limit``, which
    starts it over)."""
    if not bad:
        return 0, False
    return (0, True) if count + 1 >= limit else (count + 1, False)


WAVEFRONT_WORK = 3e7
"""Steps x packed weight bytes of a layer above which a stack of layers in one tile runs as a wavefront.

Below it a layer's steps take a few microseconds, less than handing a layer
to a pool thread (15-90 us); the same threshold as the direction split
(`rnnjit.kernels.SPLIT_WORK`).
"""


def wavefront_workers(spec: RNNSpec, one_tile: bool, threads: int, work: float, teams: bool = False) -> int:
    """Threads for a stack of layers run at once (`rnnjit.kernels.wavefront`), or 0 for layer after layer.

    Only one-directional stacks (layer l+1's step t then needs layer l up to
    step t, not a reverse pass over the whole sequence) in one tile (with
    more tiles the threads already share the tiles out), on two or more
    threads, with enough work per layer (`WAVEFRONT_WORK`), and not when its
    layers would run as teams (``teams``: `team_chunks` chose one).

    A team is chosen when what a step reads does not fit in one core's L2
    (`L2_BYTES`): a wavefront thread then reads all of its layer's weights
    every step, from L3, a team thread half of them, which stay in its L2.
    Measured (batch of one, T=160, 2 threads, `chrt -f 1`, best of 7 rounds
    of 5 calls, ms; teams layer after layer / wavefront; load 2-3): LSTM
    40->256 x2 1.53 / 2.07, x3 2.46 / 3.22, x4 3.49 / 3.99; 40->320 x3 4.63 /
    5.87; 40->384 x3 6.83 / 8.73; 64->512 x2 8.08 / 8.19; GRU 64->256 x4 3.34
    / 3.79. (Before, the first layer of an odd stack ran as a team and the
    rest as a wavefront: 2.89-2.92 ms for LSTM 40->256 x3.) Where a step's
    weights fit in L2 there is no team and the wavefront wins: LSTM 40->192
    x3 1.37 against 1.98 as teams.
    """
    if spec.num_layers < 2 or spec.num_directions != 1 or not one_tile or threads < 2 or work < WAVEFRONT_WORK:
        return 0
    if teams:
        return 0
    if time.monotonic() < _waves_paused_until:
        return 0
    return min(threads, spec.num_layers)


WAVE_WAIT = 1.0
"""Share of its own run time the calling thread may wait for the others at the end of a wavefront before waves pause.

Waiting as long as it ran, the call took as long as its layers one after the
other. With the machine's cores to itself (real-time priority) it waits
the upper layer's lag: LSTM 150 x2, T=375, batch of one, 0.15-0.37 ms after
running 1.66 ms (one call in 15: 2.3 ms, a hiccup); when another process
holds up an upper layer's thread it waits for all that thread has not done
(load average 10, normal priority: median 8.5 ms against 1.8 on one thread).
"""

WAVE_STRIKES = 3
"""Waves in a row whose caller mostly waited (`WAVE_WAIT`) before stacks run layer after layer (`pause_seconds`).

One such wave is a hiccup even with the machine to itself (above); after
the first rule paused on every one, a quiet benchmark of the beat tracker's
batch of one ran paused nearly throughout: median 2.84 ms, against 2.05
with the pause reset before each call and 2.85 layer after layer
(`python -m bench.b1_threads`, load 1). A thread that another process holds
up does so call after call, which three in a row still catch.
"""

_waves_paused_until = 0.0
_wave_strikes = 0
_wave_pauses = 0  # pauses of waves since a wave whose caller did not mostly wait


def note_wave(ran: float, waited: float) -> None:
    """Count a wave whose caller waited more than `WAVE_WAIT` of ``ran``; after `WAVE_STRIKES` in a row, run
    stacks layer after layer (`pause_seconds`). A wave that did not wait so long clears the count and the
    doubling of the pauses."""
    global _waves_paused_until, _wave_strikes, _wave_pauses
    slow = waited > WAVE_WAIT * ran
    _wave_strikes, pause = _strike(_wave_strikes, slow, WAVE_STRIKES)
    if pause:
        _waves_paused_until = time.monotonic() + pause_seconds(_wave_pauses)
        _wave_pauses += 1
    elif not slow:
        _wave_pauses = 0


def clear_pauses() -> None:
    """Teams and waves unpaused, with no strikes, no doubling and no call under way: the state of a fresh
    process (the timed choice of `b1_team` is kept). For tests and benchmarks that must not inherit an earlier
    run's back-off."""
    global _team_paused_until, _waves_paused_until, _alone_strikes, _wave_strikes, _team_pauses, _wave_pauses
    _team_paused_until = _waves_paused_until = 0.0
    _alone_strikes = _wave_strikes = _team_pauses = _wave_pauses = 0
    _call_runs[0] = _call_runs[1] = 0
