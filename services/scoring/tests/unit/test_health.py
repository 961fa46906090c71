"""Account health: every state and every reason, at the thresholds exactly, with and without
invitations and a revenue weight.

Intervals are the 95 % ones of `domain/statistics.py` (see its worked examples), e.g. by
adjusted Wald: 9/1/0 (promoters/passives/detractors) is NPS 90 in [38.08, 100], 3/2/5 is -20 in
[-61.10, 30.33], 5/2/3 is 20 in [-30.33, 61.10], 4/1/0 is 80 in [4.17, 95.83], 5/0/0 is 100 in
[17.49, 100] (P + 3/4 and D + 3/4 over n + 3: 62.5 ± 1.959964 x 22.964)."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from closeloop_scoring.config import ScoringSettings
from closeloop_scoring.domain.health import (
    REASON_CODES,
    Health,
    HealthPolicy,
    assess,
)
from closeloop_scoring.domain.nps import NpsCounts
from closeloop_scoring.domain.statistics import METHODS, Method, NpsEstimate, estimate

DEFAULT = HealthPolicy()
LARGE = HealthPolicy(large_account_weight=1000)


def of(
    promoters: int,
    passives: int,
    detractors: int,
    *,
    invitations: int = 0,
    weight: float | None = None,
    policy: HealthPolicy = DEFAULT,
    method: Method = "adjusted-wald",
) -> Health:
    found = estimate(NpsCounts(promoters, passives, detractors), method=method)
    return assess(found, invitations=invitations, revenue_weight=weight, policy=policy)


def test_the_defaults() -> None:
    expected = HealthPolicy(
        risk_nps=0.0, min_responses=5, min_response_rate=0.2, large_account_weight=None
    )
    assert expected == DEFAULT


# --- unknown: no answers, too few -------------------------------------------------------------


def test_no_answers_is_unknown() -> None:
    health = of(0, 0, 0)
    assert health.state == "unknown"
    assert health.codes == ("no_answers",)
    assert health.reasons[0].text == "No answers in this window"
    assert health.reasons[0].numbers == {"n": 0}


def test_no_answers_to_invitations_is_unknown_and_says_the_silence() -> None:
    health = of(0, 0, 0, invitations=3)
    assert (health.state, health.codes) == ("unknown", ("no_answers", "low_response_rate"))
    silence = health.reasons[1]
    assert (
        silence.text == "0 answers to 3 invitations (0%) is below the minimum response rate of 20%"
    )
    assert silence.numbers == {
        "n": 0,
        "invitations": 3,
        "response_rate": 0.0,
        "min_response_rate": 0.2,
    }


def test_fewer_answers_than_the_minimum_are_not_judged() -> None:
    # 4 detractors: the NPS is -100, but four answers are too few to say anything.
    health = of(0, 0, 4)
    assert (health.state, health.codes) == ("unknown", ("too_few_answers",))
    assert health.reasons[0].text == "4 answers, fewer than the 5 needed to judge the account"
    assert health.reasons[0].numbers == {"n": 4, "min_responses": 5}
    one = of(1, 0, 0).reasons[0]
    assert one.text == "1 answer, fewer than the 5 needed to judge the account"


def test_too_few_answers_list_a_low_response_rate_too() -> None:
    health = of(3, 0, 1, invitations=40)
    assert (health.state, health.codes) == ("unknown", ("too_few_answers", "low_response_rate"))
    assert health.reasons[1].numbers["response_rate"] == 0.1
    assert health.reasons[1].text == (
        "4 answers to 40 invitations (10%) is below the minimum response rate of 20%"
    )


def test_exactly_the_minimum_number_of_answers_is_judged() -> None:
    health = of(5, 0, 0)  # 100 in [17.49, 100]
    assert (health.state, health.codes) == ("safe", ("clearly_above_threshold",))
    assert of(4, 0, 0).state == "unknown"
    judged_from_three = HealthPolicy(min_responses=3)
    # 3/0/0: 100 in [-6.58, 100] (50 ± 1.959964 x 28.868).
    assert of(3, 0, 0, policy=judged_from_three).codes == ("interval_spans_threshold",)


# --- safe ---------------------------------------------------------------------------------------


def test_clearly_above_the_threshold_is_safe() -> None:
    health = of(9, 1, 0)
    assert (health.state, health.codes) == ("safe", ("clearly_above_threshold",))
    reason = health.reasons[0]
    assert reason.text == "NPS 90 (95% interval 38.1 to 100) is clearly above the risk threshold 0"
    assert reason.numbers == {
        "nps": 90.0,
        "ci_low": pytest.approx(38.0792, abs=1e-4),
        "ci_high": 100.0,
        "confidence": 0.95,
        "risk_nps": 0.0,
    }


def test_a_lower_bound_exactly_at_the_threshold_is_safe() -> None:
    found = estimate(NpsCounts(4, 1, 0))  # 80 in [4.17, 95.83]
    assert found.ci_low is not None
    at = HealthPolicy(risk_nps=found.ci_low)
    just_above = HealthPolicy(risk_nps=math.nextafter(found.ci_low, math.inf))
    assert assess(found, invitations=0, revenue_weight=None, policy=at).state == "safe"
    health = assess(found, invitations=0, revenue_weight=None, policy=just_above)
    assert (health.state, health.codes) == ("unknown", ("interval_spans_threshold",))


def test_a_response_rate_exactly_at_the_minimum_is_fine() -> None:
    assert of(9, 1, 0, invitations=50).codes == ("clearly_above_threshold",)  # 10 / 50 = 0.2
    health = of(9, 1, 0, invitations=51)  # 0.196
    assert (health.state, health.codes) == (
        "at_risk",
        ("low_response_rate", "clearly_above_threshold"),
    )


def test_without_invitations_the_response_rate_is_not_judged() -> None:
    assert of(9, 1, 0, invitations=0).state == "safe"


def test_more_answers_than_invitations_is_fine() -> None:
    # Answers posted over the API without an invitation push the rate above 1.
    assert of(9, 1, 0, invitations=2).state == "safe"


# --- at risk ------------------------------------------------------------------------------------


def test_an_nps_below_the_threshold_is_at_risk_even_when_uncertain() -> None:
    health = of(3, 2, 5)  # -20 in [-61.10, 30.33]
    assert (health.state, health.codes) == (
        "at_risk",
        ("nps_below_threshold", "interval_spans_threshold"),
    )
    assert health.reasons[0].text == (
        "NPS -20 (95% interval -61.1 to 30.3) is below the risk threshold 0"
    )
    assert health.reasons[1].text == (
        "NPS -20 (95% interval -61.1 to 30.3) spans the risk threshold 0: "
        "not clearly above or below it"
    )


def test_an_nps_exactly_at_the_threshold_is_not_below_it() -> None:
    health = of(5, 0, 5)  # 0 in [-51.13, 51.13]
    assert (health.state, health.codes) == ("unknown", ("interval_spans_threshold",))
    twenty = of(5, 2, 3, policy=HealthPolicy(risk_nps=20))  # 20 in [-30.33, 61.10]
    assert (twenty.state, twenty.codes) == ("unknown", ("interval_spans_threshold",))
    above = of(5, 2, 3, policy=HealthPolicy(risk_nps=20.5))
    assert above.codes == ("nps_below_threshold", "interval_spans_threshold")


def test_an_interval_wholly_below_the_threshold() -> None:
    health = of(0, 1, 9, method="wald")  # -90 in [-100, -71.41]
    assert (health.state, health.codes) == (
        "at_risk",
        ("nps_below_threshold", "interval_below_threshold"),
    )
    assert health.reasons[1].text == (
        "NPS -90 (95% interval -100 to -71.4) is below the risk threshold 0 across its whole "
        "interval"
    )


def test_an_interval_below_the_threshold_decides_even_when_the_point_is_not() -> None:
    # Adjusted Wald centres the interval away from the observed NPS; made up to the extreme.
    found = _estimate(nps=5.0, ci_low=-30.0, ci_high=-1.0)
    health = assess(found, invitations=0, revenue_weight=None)
    assert (health.state, health.codes) == ("at_risk", ("interval_below_threshold",))


def test_a_low_response_rate_is_at_risk_whatever_the_nps() -> None:
    health = of(5, 2, 3, invitations=100)  # 10 of 100, NPS uncertain
    assert (health.state, health.codes) == (
        "at_risk",
        ("low_response_rate", "interval_spans_threshold"),
    )
    below = of(3, 2, 5, invitations=100)
    assert below.codes == ("nps_below_threshold", "low_response_rate", "interval_spans_threshold")
    assert of(5, 2, 3, invitations=100, policy=HealthPolicy(min_response_rate=0)).state == (
        "unknown"
    )


def test_a_rate_below_one_percent_reads_with_its_digits() -> None:
    health = of(9, 1, 0, invitations=3000)
    assert health.reasons[0].text == (
        "10 answers to 3000 invitations (0.33%) is below the minimum response rate of 20%"
    )


# --- spanning the threshold: unknown, or at risk for a large account --------------------------


def test_an_interval_spanning_the_threshold_is_unknown() -> None:
    health = of(5, 2, 3)
    assert (health.state, health.codes) == ("unknown", ("interval_spans_threshold",))
    assert health.reasons[0].numbers == {
        "nps": 20.0,
        "ci_low": pytest.approx(-30.326, abs=1e-3),
        "ci_high": pytest.approx(61.0952, abs=1e-4),
        "confidence": 0.95,
        "risk_nps": 0.0,
    }


def test_a_large_account_is_at_risk_unless_clearly_above() -> None:
    health = of(5, 2, 3, weight=5000, policy=LARGE)
    assert (health.state, health.codes) == (
        "at_risk",
        ("large_account_uncertain", "interval_spans_threshold"),
    )
    reason = health.reasons[0]
    assert reason.text == (
        "An account this large (revenue weight 5000, large from 1000) is at risk unless clearly "
        "above the risk threshold 0"
    )
    assert reason.numbers == {
        "revenue_weight": 5000,
        "large_account_weight": 1000,
        "ci_low": pytest.approx(-30.326, abs=1e-3),
        "ci_high": pytest.approx(61.0952, abs=1e-4),
        "confidence": 0.95,
        "risk_nps": 0.0,
    }
    # Clearly above, a large account is safe; too few answers stay unknown.
    assert of(9, 1, 0, weight=5000, policy=LARGE).state == "safe"
    assert of(3, 0, 1, weight=5000, policy=LARGE).codes == ("too_few_answers",)


def test_a_weight_exactly_at_the_large_account_weight_is_large() -> None:
    assert of(5, 2, 3, weight=1000, policy=LARGE).state == "at_risk"
    assert of(5, 2, 3, weight=999.99, policy=LARGE).state == "unknown"


def test_an_unknown_weight_or_no_large_account_weight_is_not_large() -> None:
    assert of(5, 2, 3, weight=None, policy=LARGE).codes == ("interval_spans_threshold",)
    assert of(5, 2, 3, weight=1e9, policy=DEFAULT).codes == ("interval_spans_threshold",)


def test_a_low_rate_decides_before_the_account_s_size() -> None:
    health = of(5, 2, 3, invitations=100, weight=5000, policy=LARGE)
    assert (health.state, health.codes) == (
        "at_risk",
        ("low_response_rate", "large_account_uncertain", "interval_spans_threshold"),
    )


def test_other_confidence_levels_are_named_in_the_text() -> None:
    found = estimate(NpsCounts(9, 1, 0), confidence=0.9)
    text = assess(found, invitations=0, revenue_weight=None).reasons[0].text
    assert text.startswith("NPS 90 (90% interval ")


def test_small_figures_never_read_as_the_threshold() -> None:
    found = _estimate(nps=-0.04, ci_low=-2.0, ci_high=1.9)
    health = assess(found, invitations=0, revenue_weight=None)
    assert health.reasons[0].text == (
        "NPS -0.04 (95% interval -2 to 1.9) is below the risk threshold 0"
    )


# --- the policy ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"risk_nps": -100.5},
        {"risk_nps": 101},
        {"min_responses": 0},
        {"min_response_rate": -0.1},
        {"min_response_rate": 1.5},
        {"large_account_weight": 0},
        {"large_account_weight": -5},
        {"large_account_weight": math.inf},
    ],
)
def test_a_policy_out_of_range_is_refused(bad: dict[str, float]) -> None:
    (name,) = bad
    with pytest.raises(ValueError, match=name):
        HealthPolicy(**bad)  # type: ignore[arg-type]


# --- properties ----------------------------------------------------------------------------------

ADVERSE = {"nps_below_threshold", "interval_below_threshold", "low_response_rate"}
DECIDES = {
    "no_answers": "unknown",
    "too_few_answers": "unknown",
    "nps_below_threshold": "at_risk",
    "interval_below_threshold": "at_risk",
    "low_response_rate": "at_risk",
    "large_account_uncertain": "at_risk",
    "clearly_above_threshold": "safe",
    "interval_spans_threshold": "unknown",
}


@given(
    counts=st.tuples(*(st.integers(0, 60) for _ in range(3))),
    invitations=st.integers(0, 400),
    weight=st.none() | st.floats(0, 5000),
    risk_nps=st.floats(-100, 100),
    method=st.sampled_from(METHODS),
)
def test_every_assessment_is_decided_by_its_first_reason(
    counts: tuple[int, int, int],
    invitations: int,
    weight: float | None,
    risk_nps: float,
    method: Method,
) -> None:
    policy = HealthPolicy(risk_nps=risk_nps, large_account_weight=1000)
    found = estimate(NpsCounts(*counts), method=method)
    health = assess(found, invitations=invitations, revenue_weight=weight, policy=policy)
    assert DECIDES[health.reasons[0].code] == health.state
    assert len(set(health.codes)) == len(health.codes)
    rest = health.codes[1:]
    assert list(rest) == sorted(rest, key=REASON_CODES.index)
    if health.state == "safe":
        assert not ADVERSE & set(health.codes)
    if found.n >= policy.min_responses:
        placed = {"interval_below_threshold", "clearly_above_threshold", "interval_spans_threshold"}
        assert len(placed & set(health.codes)) == 1


def _estimate(*, nps: float, ci_low: float, ci_high: float) -> NpsEstimate:
    base = estimate(NpsCounts(10, 0, 10))
    return dataclasses.replace(base, nps=nps, ci_low=ci_low, ci_high=ci_high)


# --- settings ------------------------------------------------------------------------------------


def test_the_policy_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ScoringSettings().health_policy() == DEFAULT
    monkeypatch.setenv("SCORING_HEALTH_RISK_NPS", "-10")
    monkeypatch.setenv("SCORING_HEALTH_MIN_RESPONSES", "3")
    monkeypatch.setenv("SCORING_HEALTH_MIN_RESPONSE_RATE", "0.35")
    monkeypatch.setenv("SCORING_HEALTH_LARGE_ACCOUNT_WEIGHT", "250000")
    assert ScoringSettings().health_policy() == HealthPolicy(
        risk_nps=-10, min_responses=3, min_response_rate=0.35, large_account_weight=250_000
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SCORING_HEALTH_RISK_NPS", "-101"),
        ("SCORING_HEALTH_RISK_NPS", "100.5"),
        ("SCORING_HEALTH_MIN_RESPONSES", "0"),
        ("SCORING_HEALTH_MIN_RESPONSE_RATE", "1.01"),
        ("SCORING_HEALTH_MIN_RESPONSE_RATE", "-0.2"),
        ("SCORING_HEALTH_LARGE_ACCOUNT_WEIGHT", "0"),
        ("SCORING_HEALTH_LARGE_ACCOUNT_WEIGHT", "-1"),
    ],
)
def test_a_health_setting_out_of_range_is_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=variable.lower()):
        ScoringSettings()
