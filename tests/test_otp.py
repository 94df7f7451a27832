"""Token codes: RFC 6238 and RFC 4226 vectors, the ±1 step window (TOTP) and the look-ahead
window (HOTP), replay refusal, and resynchronisation from two consecutive codes."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

import otp

RFC_SEED = base64.b32encode(b"12345678901234567890").decode()
RFC_PROFILE = otp.TokenProfile("mobile", digits=8, period=30)
NOW = datetime(2025, 3, 3, 2, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("unix_time", "code"),
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ],
)
def test_codes_match_rfc_6238_sha1_vectors(unix_time: int, code: str) -> None:
    now = datetime.fromtimestamp(unix_time, UTC)
    assert otp.current_code(RFC_SEED, RFC_PROFILE, now) == code
    assert otp.verify(RFC_SEED, code, RFC_PROFILE, now, last_used_step=None).ok


@pytest.mark.parametrize("profile", [otp.HARDWARE, otp.MOBILE])
@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_code_one_step_early_or_late_is_accepted(profile: otp.TokenProfile, offset: int) -> None:
    seed = otp.new_seed()
    code = otp.current_code(seed, profile, NOW + timedelta(seconds=offset * profile.period))
    result = otp.verify(seed, code, profile, NOW, last_used_step=None)
    assert result.ok
    assert result.drift == offset
    assert result.step == int(NOW.timestamp()) // profile.period + offset


@pytest.mark.parametrize("offset", [-2, 2])
def test_code_two_steps_away_is_refused(offset: int) -> None:
    seed = otp.new_seed()
    code = otp.current_code(seed, otp.HARDWARE, NOW + timedelta(seconds=offset * 60))
    result = otp.verify(seed, code, otp.HARDWARE, NOW, last_used_step=None)
    assert result == otp.VerifyResult(ok=False, step=None, drift=0, replayed=False)


def test_the_window_is_centred_on_the_remembered_drift() -> None:
    seed = otp.new_seed()
    code = otp.current_code(seed, otp.HARDWARE, NOW + timedelta(seconds=6 * 60))
    assert not otp.verify(seed, code, otp.HARDWARE, NOW, last_used_step=None).ok
    result = otp.verify(seed, code, otp.HARDWARE, NOW, last_used_step=None, drift=5)
    assert result.ok and result.drift == 6  # the token's total drift
    assert result.step == int(NOW.timestamp()) // 60 + 6


def test_replayed_code_is_refused() -> None:
    seed = otp.new_seed()
    code = otp.current_code(seed, otp.HARDWARE, NOW)
    first = otp.verify(seed, code, otp.HARDWARE, NOW, last_used_step=None)
    again = otp.verify(seed, code, otp.HARDWARE, NOW, last_used_step=first.step)
    assert first.ok and not first.replayed
    assert not again.ok and again.replayed


def test_earlier_code_than_last_used_step_is_refused_as_replay() -> None:
    seed = otp.new_seed()
    step = int(NOW.timestamp()) // 60
    code = otp.current_code(seed, otp.HARDWARE, NOW - timedelta(seconds=60))
    result = otp.verify(seed, code, otp.HARDWARE, NOW, last_used_step=step)
    assert result.replayed and not result.ok


def test_next_code_after_a_used_step_is_accepted() -> None:
    seed = otp.new_seed()
    step = int(NOW.timestamp()) // 60
    code = otp.current_code(seed, otp.HARDWARE, NOW + timedelta(seconds=60))
    assert otp.verify(seed, code, otp.HARDWARE, NOW, last_used_step=step).ok


@pytest.mark.parametrize(
    "code", ["", "12345", "1234567", "abcdef", "12345678", "12345\u00b2", "\uff11" * 6]
)
def test_code_of_wrong_shape_is_refused(code: str) -> None:
    assert not otp.verify(otp.new_seed(), code, otp.HARDWARE, NOW, last_used_step=None).ok


def test_naive_time_is_rejected() -> None:
    with pytest.raises(ValueError):
        otp.current_code(otp.new_seed(), otp.MOBILE, datetime(2025, 1, 1))


def test_new_seed_has_160_bits() -> None:
    assert len(base64.b32decode(otp.new_seed())) == 20


@pytest.mark.parametrize(("digits", "period"), [(7, 30), (6, 45)])
def test_unsupported_profile_is_rejected(digits: int, period: int) -> None:
    with pytest.raises(ValueError):
        otp.TokenProfile("mobile", digits=digits, period=period)


# --- resynchronisation from two consecutive codes --------------------------------------------


@pytest.mark.parametrize("drift", [-10, -3, 0, 2, 9])
def test_resync_finds_the_step_of_two_consecutive_codes(drift: int) -> None:
    seed = otp.new_seed()
    token_now = NOW + timedelta(seconds=drift * 60)  # the token's clock, `drift` steps off
    first = otp.current_code(seed, otp.HARDWARE, token_now - timedelta(seconds=60))
    second = otp.current_code(seed, otp.HARDWARE, token_now)
    step = otp.resync(seed, first, second, otp.HARDWARE, NOW)
    assert step == int(NOW.timestamp()) // 60 + drift


def test_resync_refuses_codes_that_are_not_consecutive() -> None:
    seed = otp.new_seed()
    first = otp.current_code(seed, otp.HARDWARE, NOW)
    third = otp.current_code(seed, otp.HARDWARE, NOW + timedelta(seconds=120))
    assert otp.resync(seed, first, third, otp.HARDWARE, NOW) is None
    assert otp.resync(seed, third, first, otp.HARDWARE, NOW) is None


def test_resync_refuses_codes_beyond_the_window() -> None:
    seed = otp.new_seed()
    far = NOW + timedelta(seconds=12 * 60)
    first = otp.current_code(seed, otp.HARDWARE, far - timedelta(seconds=60))
    second = otp.current_code(seed, otp.HARDWARE, far)
    assert otp.resync(seed, first, second, otp.HARDWARE, NOW, window=10) is None
    assert otp.resync(seed, first, second, otp.HARDWARE, NOW, window=12) is not None


@pytest.mark.parametrize("codes", [("", "123456"), ("12345", "123456"), ("abcdef", "123456")])
def test_resync_refuses_codes_of_the_wrong_shape(codes: tuple[str, str]) -> None:
    assert otp.resync(otp.new_seed(), *codes, otp.HARDWARE, NOW) is None


def test_resync_works_for_8_digit_mobile_tokens() -> None:
    seed = otp.new_seed()
    profile = otp.TokenProfile("mobile", digits=8, period=30)
    first = otp.current_code(seed, profile, NOW + timedelta(seconds=90))
    second = otp.current_code(seed, profile, NOW + timedelta(seconds=120))
    assert otp.resync(seed, first, second, profile, NOW) == int(NOW.timestamp()) // 30 + 4


# --- event tokens (HOTP, RFC 4226) -----------------------------------------------------------

HOTP = otp.TokenProfile("hardware", digits=6, period=None, type="hotp")
# RFC 4226, appendix D: the codes of its test seed at counters 0 to 9.
RFC_4226_CODES = [
    "755224",
    "287082",
    "359152",
    "969429",
    "338314",
    "254676",
    "287922",
    "162583",
    "399871",
    "520489",
]


@pytest.mark.parametrize(("counter", "code"), list(enumerate(RFC_4226_CODES)))
def test_codes_match_rfc_4226_vectors(counter: int, code: str) -> None:
    assert otp.counter_code(RFC_SEED, HOTP, counter) == code
    result = otp.verify_hotp(RFC_SEED, code, HOTP, counter=counter)
    assert result == otp.VerifyResult(ok=True, step=counter, drift=0, replayed=False)


def test_hotp_accepts_codes_within_the_look_ahead_window_only() -> None:
    expected = 6  # counters 6 to 6 + HOTP_LOOK_AHEAD - 1 may come next
    ahead = [
        otp.verify_hotp(RFC_SEED, otp.counter_code(RFC_SEED, HOTP, c), HOTP, expected).ok
        for c in range(expected, expected + otp.HOTP_LOOK_AHEAD + 1)
    ]
    assert ahead == [True] * otp.HOTP_LOOK_AHEAD + [False]


@pytest.mark.parametrize("counter", [0, 3, 5])
def test_hotp_code_of_a_used_counter_or_an_earlier_one_is_refused_as_replay(counter: int) -> None:
    code = otp.counter_code(RFC_SEED, HOTP, counter)
    result = otp.verify_hotp(RFC_SEED, code, HOTP, counter=6)
    assert result == otp.VerifyResult(ok=False, step=None, drift=0, replayed=True)


@pytest.mark.parametrize("code", ["75522", "7552244", "75522a", "７５５２２４"])
def test_hotp_refuses_codes_of_the_wrong_shape(code: str) -> None:
    assert otp.verify_hotp(RFC_SEED, code, HOTP, counter=0) == otp.REFUSED


def test_time_and_counter_functions_refuse_the_other_type() -> None:
    with pytest.raises(ValueError, match="counter, not the clock"):
        otp.verify(RFC_SEED, RFC_4226_CODES[0], HOTP, NOW, last_used_step=None)
    with pytest.raises(ValueError, match="clock, not a counter"):
        otp.verify_hotp(RFC_SEED, "94287082", RFC_PROFILE, counter=0)


def test_hotp_resync_finds_the_counter_of_two_consecutive_codes_far_ahead() -> None:
    first, second = (otp.counter_code(RFC_SEED, HOTP, c) for c in (700, 701))
    assert otp.verify_hotp(RFC_SEED, second, HOTP, counter=6).ok is False
    assert otp.resync_hotp(RFC_SEED, first, second, HOTP, counter=6) == 701


def test_hotp_resync_refuses_codes_out_of_order_used_or_beyond_the_window() -> None:
    def codes(first: int, second: int) -> tuple[str, str]:
        return otp.counter_code(RFC_SEED, HOTP, first), otp.counter_code(RFC_SEED, HOTP, second)

    assert otp.resync_hotp(RFC_SEED, *codes(10, 12), HOTP, counter=6) is None
    assert otp.resync_hotp(RFC_SEED, *codes(4, 5), HOTP, counter=6) is None  # used
    far = 5 + otp.HOTP_RESYNC_WINDOW + 1
    assert otp.resync_hotp(RFC_SEED, *codes(far, far + 1), HOTP, counter=6) is None
    assert otp.resync_hotp(RFC_SEED, *codes(far - 1, far), HOTP, counter=6) == far


@pytest.mark.parametrize(
    ("kind", "period", "message"),
    [("mobile", None, "time-based"), ("hardware", 60, "no period")],
)
def test_event_tokens_are_hardware_tokens_without_a_period(
    kind: otp.TokenKind, period: int | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        otp.TokenProfile(kind, digits=6, period=period, type="hotp")
