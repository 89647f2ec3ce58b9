"""The derivation of the five metrics from a run's samples, the checks and the flags: pure
rules, tested as properties (hypothesis) and by example."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuq.evidence import checks, derive, flags
from gpuq.evidence.model import Evidence, Gpu, Run, Samples, digest, encode

START = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
percent = st.decimals(min_value=0, max_value=100, places=2)
watts = st.decimals(min_value=Decimal("1"), max_value=1000, places=1)


def evidence(
    util: list[Decimal],
    power: list[Decimal],
    seconds: Decimal = Decimal(10),
    mem_used: int = 40,
    mem_total: int = 80,
    limit: Decimal = Decimal(700),
    energy: list[Decimal | None] | None = None,
) -> Evidence:
    count = len(util)
    t = [seconds * i / (count - 1) for i in range(count)]
    if energy is None:
        running, energy = Decimal(1000), []
        for i in range(count):
            if i:
                running += (t[i] - t[i - 1]) * (power[i - 1] + power[i]) / 2
            energy.append(running)
    return Evidence(
        ticket_id="t",
        nonce="n",
        rate_hz=Decimal(count - 1) / seconds,
        gpu=Gpu("GPU", "GPU-1", "1", limit, mem_total),
        samples=Samples(
            t=t,
            gpu_util=util,
            mem_used_bytes=[mem_used] * count,
            power_w=power,
            energy_j=energy,
            sm_clock_mhz=[None] * count,
            mem_clock_mhz=[None] * count,
            throttle_reasons=[None] * count,
            uuid=["GPU-1"] * count,
        ),
        run=Run(
            START, START + dt.timedelta(seconds=float(seconds)), seconds, Decimal("0.5"), 0, Decimal("97.5")
        ),
        unsupported=frozenset(),
        agent="test",
    )


@given(st.lists(percent, min_size=2, max_size=30), watts)
def test_the_derivation_is_deterministic_and_its_utilisation_is_the_mean(util, power):
    run = evidence(util, [power] * len(util))
    first, second = derive.derive(run), derive.derive(run)
    assert first == second
    assert encode(run) == encode(run) and digest(run) == digest(run)
    exact = sum(util, Decimal(0)) / len(util)
    assert abs(first.gpu_utilization - exact) <= Decimal("0.00005")


@given(percent, watts, watts)
def test_power_efficiency_never_rises_with_energy(util, power, more):
    low, high = sorted([power, more])
    cheap = derive.derive(evidence([util] * 11, [low] * 11))
    costly = derive.derive(evidence([util] * 11, [high] * 11))
    assert costly.power_efficiency <= cheap.power_efficiency


@given(percent, percent, watts)
def test_power_efficiency_never_falls_with_utilisation(util, other, power):
    low, high = sorted([util, other])
    idle = derive.derive(evidence([low] * 11, [power] * 11))
    busy = derive.derive(evidence([high] * 11, [power] * 11))
    assert busy.power_efficiency >= idle.power_efficiency


@given(st.integers(0, 80), st.integers(0, 80))
def test_memory_usage_never_falls_with_the_peak(used, other):
    low, high = sorted([used, other])
    assert (
        derive.derive(evidence([Decimal(50)] * 3, [Decimal(300)] * 3, mem_used=high)).memory_usage
        >= derive.derive(evidence([Decimal(50)] * 3, [Decimal(300)] * 3, mem_used=low)).memory_usage
    )


def test_the_documented_example():
    run = evidence([Decimal(80)] * 201, [Decimal(700)] * 201, seconds=Decimal(20), mem_used=60, mem_total=80)
    derived = derive.derive(run)
    assert derived.metrics() == {
        "gpu_utilization": Decimal("80.0000"),
        "memory_usage": Decimal("75.0000"),
        "power_efficiency": Decimal("80.0000"),
        "completion_time": Decimal("20.0000"),
        "accuracy": Decimal("97.5000"),
    }
    assert derived.energy_j == Decimal("14000.0000")


def test_without_the_energy_counter_the_power_samples_are_integrated():
    run = evidence([Decimal(50)] * 11, [Decimal(350)] * 11, energy=[None] * 11)
    assert derive.derive(run).energy_j == Decimal("3500.0000")


@pytest.mark.parametrize(
    ("change", "missing"),
    [
        (
            lambda e: dataclasses.replace(e, samples=dataclasses.replace(e.samples, gpu_util=[None] * 3)),
            "utilisation",
        ),
        (lambda e: dataclasses.replace(e, gpu=dataclasses.replace(e.gpu, memory_total_bytes=None)), "memory"),
        (lambda e: dataclasses.replace(e, gpu=dataclasses.replace(e.gpu, power_limit_w=None)), "power limit"),
        (
            lambda e: dataclasses.replace(
                e, samples=dataclasses.replace(e.samples, energy_j=[None] * 3, power_w=[None] * 3)
            ),
            "energy",
        ),
        (lambda e: dataclasses.replace(e, run=dataclasses.replace(e.run, accuracy=None)), "accuracy"),
    ],
)
def test_what_was_not_measured_is_never_invented(change, missing):
    with pytest.raises(derive.MissingMeasurement, match=missing):
        derive.derive(change(evidence([Decimal(50)] * 3, [Decimal(300)] * 3)))


def test_the_digest_ignores_the_ticket_but_not_the_measurements():
    run = evidence([Decimal(50)] * 3, [Decimal(300)] * 3)
    assert digest(dataclasses.replace(run, ticket_id="other", nonce="other")) == digest(run)
    assert digest(evidence([Decimal(51)] * 3, [Decimal(300)] * 3)) != digest(run)


def test_a_steady_honest_run_passes_every_check():
    run = evidence([Decimal(80)] * 101, [Decimal(300)] * 101)
    context = checks.Context(START - dt.timedelta(seconds=1), START + dt.timedelta(hours=1))
    results = checks.check(run, context, START + dt.timedelta(seconds=11))
    assert [result.code for result in results] == list(checks.CHECKS)
    assert checks.failed(results) == []


def test_every_check_and_refusal_has_a_description():
    assert all(checks.CODES.values()) and all(flags.CODES.values())
    assert len(checks.RULES) == len(checks.CHECKS)


@given(
    st.fixed_dictionaries(
        {
            "gpu_utilization": percent,
            "memory_usage": percent,
            "power_efficiency": percent,
            "accuracy": percent,
            "completion_time": st.decimals(min_value=Decimal("0.0001"), max_value=86400, places=4),
        }
    )
)
def test_flags_are_a_subset_of_the_codes_in_their_order(metrics):
    raised = flags.flags(metrics)
    assert raised == [code for code in flags.CODES if code in raised]


def test_the_worked_example_raises_no_flag():
    example = {
        "gpu_utilization": Decimal(90),
        "memory_usage": Decimal(85),
        "power_efficiency": Decimal(95),
        "completion_time": Decimal(30),
        "accuracy": Decimal(98),
    }
    assert flags.flags(example) == []


def test_the_published_flag_codes_are_the_flags_codes():
    from typing import get_args

    from gpuq.api.schemas import FlagCode

    assert get_args(FlagCode) == tuple(flags.CODES)


def test_a_time_far_from_its_gpus_median_is_an_outlier_once_there_are_enough_results():
    example = {
        "gpu_utilization": Decimal(90),
        "memory_usage": Decimal(85),
        "power_efficiency": Decimal(95),
        "accuracy": Decimal(98),
    }
    others = [Decimal(30)] * flags.OUTLIER_MIN_RESULTS
    assert flags.flags({**example, "completion_time": Decimal(9)}, True, others) == ["outlier_for_gpu"]
    assert flags.flags({**example, "completion_time": Decimal(91)}, True, others) == ["outlier_for_gpu"]
    assert flags.flags({**example, "completion_time": Decimal(11)}, True, others) == []
    assert flags.flags({**example, "completion_time": Decimal(9)}, True, others[1:]) == []  # too few to judge
