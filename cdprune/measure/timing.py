"""One timing protocol for whole-model latency: `cdprune bench` and a latency table's dense network.

Warm-up calls, then timed calls until the 95 % confidence interval of the median is within ±3 % of
it (CI_TARGET) or the time limit is reached. The interval is distribution-free: the order statistics
X(j) and X(n+1-j) of n sorted times, with j the largest rank such that a Binomial(n, 1/2) count
falls below j with probability at most 2.5 %; they cover the true median with probability at least
95 % whatever the distribution of the times (no normality assumed; it needs n >= 6).

A result is `noisy` when its tail is long (p90 > 1.5 × p50) or the machine is busy: the 1-minute load
average, which counts the timed work itself, above the number of CPUs. The result says what was
measured ("load 1.9 on 2 CPUs").

The module needs the standard library only: a latency-table pack (`measure/pack.py`) ships a copy of
it inside its standalone board script, so the board times files exactly as cdprune does.
"""
from __future__ import annotations

import bisect
import functools
import math
import os
import time

CONFIDENCE = 0.95
CI_TARGET = 0.03  # relative half-width of the median's interval at which timing stops
NOISY_TAIL = 1.5  # p90 / p50 above this: noisy
MIN_RUNS_FOR_CI = 6  # fewer runs give no 95 % interval of the median


def percentile(sorted_ms, q: float) -> float:
    """The q-th percentile (0-100) of sorted values, linear between ranks (numpy's default)."""
    position = (len(sorted_ms) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(sorted_ms) - 1)
    return sorted_ms[low] + (sorted_ms[high] - sorted_ms[low]) * (position - low)


@functools.lru_cache(maxsize=4096)
def median_ci_ranks(n: int, confidence: float = CONFIDENCE):
    """(j, k), 1-based ranks with P(X(j) <= median <= X(k)) >= confidence for any continuous distribution;
    None when n is too small for any such pair."""
    alpha, tail, j = (1.0 - confidence) / 2.0, 0.0, 0
    log_half = n * math.log(0.5)
    while j < n // 2:
        # P(Binomial(n, 1/2) = j), in logs: 2**-n underflows for long runs
        tail_next = tail + math.exp(math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) + log_half)
        if tail_next > alpha:
            break
        tail, j = tail_next, j + 1
    return None if j == 0 else (j, n + 1 - j)


def median_ci(sorted_ms, confidence: float = CONFIDENCE):
    """(low, high) of the median's confidence interval from sorted times, or None for too few."""
    ranks = median_ci_ranks(len(sorted_ms), confidence)
    return None if ranks is None else (sorted_ms[ranks[0] - 1], sorted_ms[ranks[1] - 1])


def relative_half_width(sorted_ms, confidence: float = CONFIDENCE) -> float:
    """The larger distance from the median to an end of its interval, over the median (inf for too few runs)."""
    ci, median = median_ci(sorted_ms, confidence), percentile(sorted_ms, 50)
    if ci is None or median <= 0:
        return math.inf
    return max(median - ci[0], ci[1] - median) / median


def machine_load():
    """(1-minute load average, CPUs); load None where the system does not report one."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = None
    return load, os.cpu_count() or 1


def summarize(times_ms, load=None, ci_target: float = CI_TARGET) -> dict:
    """p50, p90, p99, mean and min (ms), n, the median's relative 95 % CI half-width (`ci_rel`), `converged`
    (it is within ±ci_target) and `noisy` with `noise`, what decided it. load: (load average or None, CPUs)."""
    ms = sorted(times_ms)
    p50, p90 = percentile(ms, 50), percentile(ms, 90)
    tail = p90 / p50 if p50 > 0 else math.inf
    average, cpus = load if load is not None else (None, os.cpu_count() or 1)
    busy = average is not None and average > cpus
    reasons = ([f"p90/p50 {tail:.2f}"] if tail > NOISY_TAIL else []) + \
        ([f"load {average:.1f} on {cpus} CPUs"] if busy else [])
    measured = f"p90/p50 {tail:.2f}, " + (f"load {average:.1f} on {cpus} CPUs" if average is not None else
                                          "load not reported")
    half = relative_half_width(ms)
    return {"p50_ms": p50, "p90_ms": p90, "p99_ms": percentile(ms, 99), "mean_ms": sum(ms) / len(ms),
            "min_ms": ms[0], "n": len(ms), "ci_rel": half if math.isfinite(half) else None,
            "converged": half <= ci_target, "noisy": bool(reasons),
            "noise": "; ".join(reasons) if reasons else f"quiet ({measured})"}


def time_calls(step, *, warmup: int = 10, min_repeats: int = 20, min_time_s: float = 0.0,
               max_time_s: float = 10.0, ci_target: float = CI_TARGET, clock=time.perf_counter,
               load=machine_load) -> dict:
    """Time calls of `step` by the protocol above; the caller has pinned its threads and states them.

    After `warmup` calls, times calls until at least `min_repeats` calls and `min_time_s` seconds are done and
    the median's 95 % interval is within ±ci_target of it, or until `max_time_s` seconds have passed (at
    least `min_repeats` calls are always made). clock: seconds, monotonic; load: () -> (load average or
    None, CPUs). Returns `summarize`'s dict plus `timed_s` (the timed loop's wall time) and `times_ms`
    (each call, in order).
    """
    for _ in range(warmup):
        step()
    times, ordered, start, checked = [], [], clock(), 0
    while True:
        t0 = clock()
        step()
        now = clock()
        times.append((now - t0) * 1000.0)
        bisect.insort(ordered, times[-1])
        if len(times) < min_repeats or now - start < min_time_s:
            continue
        # The interval's ranks cost O(n) to find: look every call while runs are few, then every 5 % more.
        if len(times) >= max(MIN_RUNS_FOR_CI, checked * 1.05):
            checked = len(times)
            if relative_half_width(ordered) <= ci_target:
                break
        if now - start >= max_time_s:
            break
    timed_s = clock() - start
    return {**summarize(times, load(), ci_target), "timed_s": timed_s, "times_ms": times}


def fastest_ms(step, warmup: int, min_repeats: int, min_time_s: float, max_repeats: int = 2000,
               clock=time.perf_counter) -> float:
    """The fastest of timed calls of `step` (after `warmup` calls), until `min_repeats` and `min_time_s` are done:
    the run other processes disturbed least, which per-layer latency table entries record."""
    for _ in range(warmup):
        step()
    best, runs, start = float("inf"), 0, clock()
    while runs < max_repeats and (runs < min_repeats or clock() - start < min_time_s):
        t0 = clock()
        step()
        best = min(best, (clock() - t0) * 1000.0)
        runs += 1
    return best
