"""The one timing protocol (measure/timing.py): percentiles, the median's confidence interval as a stopping
rule, and the noisy flag; bench reports it."""
import pytest

from cdprune.measure.timing import median_ci_ranks, percentile, summarize, time_calls


class FakeClock:
    """A clock that only the timed calls move: each call takes the next duration of `durations_s` (cycled)."""

    def __init__(self, durations_s):
        self.now, self.durations, self.calls = 0.0, list(durations_s), 0

    def __call__(self):
        return self.now

    def step(self):
        self.now += self.durations[self.calls % len(self.durations)]
        self.calls += 1


def test_percentiles_by_hand():
    ms = [4.0, 1.0, 3.0, 2.0, 10.0]  # sorted 1 2 3 4 10
    result = summarize(ms, load=(0.0, 4))
    assert result["p50_ms"] == 3.0
    assert result["p90_ms"] == pytest.approx(4.0 + 0.6 * 6.0)  # rank 3.6 between 4 and 10
    assert result["mean_ms"] == 4.0 and result["min_ms"] == 1.0 and result["n"] == 5
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5


def test_median_interval_ranks_are_the_binomial_ones():
    # Tables of the distribution-free interval: n=6 -> X(1)..X(6) (96.9 %), n=10 -> X(2)..X(9) (97.9 %),
    # n=100 -> X(40)..X(61) (96.5 %); n=5 has none at 95 % (the widest covers 93.8 %).
    assert median_ci_ranks(5) is None
    assert (median_ci_ranks(6), median_ci_ranks(10), median_ci_ranks(100)) == ((1, 6), (2, 9), (40, 61))
    ms = [10.0, 10.1, 9.9, 10.0, 10.2, 9.8, 10.0, 10.1, 9.9, 10.0]  # sorted: 9.8 9.9 9.9 10 10 10 10 10.1 10.1 10.2
    assert summarize(ms, load=(0.0, 4))["ci_rel"] == pytest.approx(0.01)  # X(2)=9.9, X(9)=10.1 around 10.0


def test_timing_stops_once_the_median_is_known_to_3_percent():
    # Steady 10 ms calls: the interval is zero wide as soon as 6 runs give one, after min_repeats.
    clock = FakeClock([0.010])
    result = time_calls(clock.step, warmup=2, min_repeats=8, max_time_s=100, clock=clock, load=lambda: (0.0, 4))
    assert result["converged"] and result["n"] == 8 and clock.calls == 10
    assert result["p50_ms"] == pytest.approx(10.0) and result["ci_rel"] == pytest.approx(0.0)


def test_timing_gives_up_at_the_time_limit_when_the_median_wanders():
    # Alternating 10 and 20 ms: the median's interval spans both values for ever, so the limit (1 s) ends it.
    clock = FakeClock([0.010, 0.020])
    result = time_calls(clock.step, warmup=0, min_repeats=6, max_time_s=1.0, clock=clock, load=lambda: (0.0, 4))
    assert not result["converged"] and result["timed_s"] == pytest.approx(1.0, abs=0.02)
    assert result["n"] == clock.calls == 67  # 33 pairs of 30 ms reach 0.99 s, the 67th call passes 1 s
    assert result["ci_rel"] > 0.03


def test_min_time_keeps_timing_after_convergence():
    clock = FakeClock([0.010])
    result = time_calls(clock.step, warmup=0, min_repeats=1, min_time_s=0.5, max_time_s=5, clock=clock,
                        load=lambda: (0.0, 4))
    assert result["converged"] and result["n"] == 50  # the 50th 10 ms call reaches 0.5 s


def test_noisy_from_a_long_tail_or_a_busy_machine():
    steady, tail = [10.0] * 9 + [11.0], [10.0] * 8 + [16.0, 16.0]  # p90/p50: 1.01 and 1.6
    quiet = summarize(steady, load=(0.5, 2))
    assert not quiet["noisy"] and "load 0.5 on 2 CPUs" in quiet["noise"]
    long_tail = summarize(tail, load=(0.5, 2))
    assert long_tail["noisy"] and long_tail["noise"] == "p90/p50 1.60"
    busy = summarize(steady, load=(2.5, 2))
    assert busy["noisy"] and busy["noise"] == "load 2.5 on 2 CPUs"
    assert not summarize(steady, load=(None, 2))["noisy"]
