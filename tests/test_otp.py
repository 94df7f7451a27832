"""Token codes: RFC 6238 vectors, the ±1 step window, and replay refusal."""

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


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12345678"])
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
