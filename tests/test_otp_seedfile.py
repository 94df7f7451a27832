"""Seed files: the OATH CSV of docs/design.md and PSKC (RFC 6030), read whole or not at all, and
never quoting a key in an error."""

from __future__ import annotations

import base64
import os
from datetime import date

import pytest

from otp.seedfile import SeedFileError, read_pskc, read_seed_csv, read_seed_file
from tests.support.pskc import (
    RFC6030_FIGURE_6,
    RFC6030_FIGURE_7,
    RFC6030_PASSWORD,
    RFC6030_PSK,
    RFC_KEY,
    encrypted_totp_container,
    plain_totp_container,
)

HEADER = "serial,key,type,digits,period,expiry"
RFC_HEX = RFC_KEY.hex()
RFC_B32 = base64.b32encode(RFC_KEY).decode()  # GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ


def csv_of(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


# --- CSV --------------------------------------------------------------------------------------


def test_hex_and_base32_keys_give_the_same_seed() -> None:
    records = read_seed_csv(
        csv_of(
            f"FTK1,{RFC_HEX},totp,6,60,2029-04-30",
            f"FTK2,{RFC_HEX.upper()},TOTP,6,60,",
            f"FTK3,base32:{RFC_B32},totp,8,30,",
            f"FTK4,BASE32:{RFC_B32.lower()[:16]} {RFC_B32.lower()[16:]},totp,6,60,",
        )
    )
    assert {r.seed_base32 for r in records} == {RFC_B32}
    assert [(r.serial, r.digits, r.period, r.expires_on) for r in records] == [
        ("FTK1", 6, 60, date(2029, 4, 30)),
        ("FTK2", 6, 60, None),
        ("FTK3", 8, 30, None),
        ("FTK4", 6, 60, None),
    ]


def test_base32_padding_is_accepted_and_dropped() -> None:
    seed = base64.b32encode(bytes(range(16))).decode()  # 16 bytes: ends in "======"
    (record,) = read_seed_csv(csv_of(f"FTK1,base32:{seed},totp,6,60,"))
    assert record.seed_base32 == seed.rstrip("=")


def test_hotp_rows_are_read_without_a_period() -> None:
    (record,) = read_seed_csv(csv_of(f"HOTP1,{RFC_HEX},hotp,6,,"))
    assert (record.type, record.period) == ("hotp", None)


def test_a_records_repr_never_shows_the_seed() -> None:
    (record,) = read_seed_csv(csv_of(f"FTK1,{RFC_HEX},totp,6,60,"))
    assert RFC_B32 not in repr(record) and RFC_HEX not in repr(record)


def test_blank_lines_and_a_byte_order_mark_are_tolerated() -> None:
    text = "\ufeff" + HEADER + "\n\n" + f"FTK1,{RFC_HEX},totp,6,60,\n\n"
    assert [r.where for r in read_seed_csv(text)] == ["line 3"]


BAD_ROWS = {
    "not hex": (f"FTK1,{RFC_HEX[:-2]}zz,totp,6,60,", "key: not hex"),
    "odd hex": (f"FTK1,{RFC_HEX}1,totp,6,60,", "key: not hex"),
    "short key": ("FTK1,31323334353637383930,totp,6,60,", "key: 80 bits"),
    "bad base32": ("FTK1,base32:GEZDGNB1,totp,6,60,", "key: not base32"),
    "type": (f"FTK1,{RFC_HEX},motp,6,60,", "type: totp or hotp"),
    "digits": (f"FTK1,{RFC_HEX},totp,7,60,", "6 or 8 digits"),
    "period": (f"FTK1,{RFC_HEX},totp,6,45,", "30 or 60"),
    "no period": (f"FTK1,{RFC_HEX},totp,6,,", "period: not a number"),
    "expiry format": (f"FTK1,{RFC_HEX},totp,6,60,30/04/2029", "expiry: YYYY-MM-DD"),
    "expiry date": (f"FTK1,{RFC_HEX},totp,6,60,2029-02-30", "expiry: not a date"),
    "fields": (f"FTK1,{RFC_HEX},totp,6,60", "5 fields, expected 6"),
    "serial": (f"FTK 1,{RFC_HEX},totp,6,60,", "serial:"),
}


@pytest.mark.parametrize("case", BAD_ROWS.values(), ids=BAD_ROWS.keys())
def test_a_bad_row_fails_the_file_with_its_line_and_without_the_key(case: tuple[str, str]) -> None:
    row, message = case
    good = f"FTK9,{RFC_HEX},totp,6,60,"
    with pytest.raises(SeedFileError) as caught:
        read_seed_csv(csv_of(good, good.replace("FTK9", "FTK8"), row))
    assert caught.value.problems == [f"line 4: {caught.value.problems[0].split(': ', 1)[1]}"]
    assert message in str(caught.value)
    assert RFC_HEX not in str(caught.value) and RFC_B32 not in str(caught.value)


def test_every_bad_row_is_listed_at_once() -> None:
    with pytest.raises(SeedFileError) as caught:
        read_seed_csv(
            csv_of(
                f"FTK1,{RFC_HEX},totp,6,60,",
                f"FTK2,{RFC_HEX},totp,7,60,",
                f"FTK3,{RFC_HEX},totp,6,60,",
                f"FTK1,{RFC_HEX},totp,6,60,",
            )
        )
    assert [p.split(":")[0] for p in caught.value.problems] == ["line 3", "line 5"]
    assert "serial FTK1 repeats line 2" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("serial,key,type\nFTK1,00,totp\n", "the header must be"),
        (HEADER + "\n", "no tokens"),
    ],
)
def test_files_without_tokens_are_refused(text: str, message: str) -> None:
    with pytest.raises(SeedFileError, match=message):
        read_seed_csv(text)


def test_binary_garbage_is_refused() -> None:
    with pytest.raises(SeedFileError, match="neither UTF-8 CSV nor PSKC"):
        read_seed_file(b"\xff\xfe\x00garbage")


# --- PSKC -------------------------------------------------------------------------------------


def test_rfc_6030_figure_6_decrypts_to_the_rfc_secret() -> None:
    (record,) = read_pskc(RFC6030_FIGURE_6, RFC6030_PSK)
    assert base64.b32decode(record.seed_base32) == RFC_KEY  # 3132...3930, as the RFC says
    assert (record.serial, record.type, record.digits, record.counter) == (
        "987654321",
        "hotp",
        8,
        0,
    )


def test_pskc_with_the_wrong_pre_shared_key_fails_on_the_mac() -> None:
    with pytest.raises(SeedFileError, match="ValueMAC does not match|cannot decrypt"):
        read_pskc(RFC6030_FIGURE_6, bytes(16))


def test_encrypted_pskc_without_the_key_is_refused() -> None:
    with pytest.raises(SeedFileError, match="give the pre-shared key"):
        read_seed_file(RFC6030_FIGURE_6)


def test_plain_pskc_totp_with_device_expiry() -> None:
    (record,) = read_seed_file(plain_totp_container())
    assert (record.serial, record.type, record.digits, record.period, record.expires_on) == (
        "FTK200000001",
        "totp",
        6,
        60,
        date(2029, 4, 30),
    )
    assert record.seed_base32 == RFC_B32


def test_aes256_pskc_with_an_hmac_sha256_mac_decrypts() -> None:
    psk = os.urandom(32)
    (record,) = read_pskc(encrypted_totp_container(psk, RFC_KEY), psk)
    assert (record.seed_base32, record.digits, record.period) == (RFC_B32, 8, 30)


def test_pskc_with_an_altered_ciphertext_is_refused_before_decryption() -> None:
    psk = os.urandom(32)
    with pytest.raises(SeedFileError, match="ValueMAC does not match"):
        read_pskc(encrypted_totp_container(psk, RFC_KEY, tamper=True), psk)


def test_pskc_with_a_doctype_is_refused() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]>' + plain_totp_container()
    with pytest.raises(SeedFileError, match="document type declaration"):
        read_seed_file(bomb)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<KeyContainer", "not well-formed"),
        (b'<KeyContainer Version="1.0"/>', "root element"),
        (plain_totp_container().replace(b'Version="1.0"', b'Version="2.0"'), "version 1.0"),
        (plain_totp_container(period=45), "KeyPackage 1: token period"),
        (plain_totp_container(serial="bad serial"), "KeyPackage 1: serial"),
    ],
)
def test_bad_pskc_is_refused_clearly(data: bytes, message: str) -> None:
    with pytest.raises(SeedFileError, match=message):
        read_seed_file(data)


def test_rfc_6030_figure_7_decrypts_with_the_rfc_password() -> None:
    (record,) = read_seed_file(RFC6030_FIGURE_7, password=RFC6030_PASSWORD)
    assert base64.b32decode(record.seed_base32) == RFC_KEY  # 3132...3930, as the RFC says
    assert (record.serial, record.type, record.digits, record.period, record.counter) == (
        "987654321",
        "hotp",
        8,
        None,
        0,
    )


def test_password_protected_pskc_with_a_wrong_password_is_refused_without_the_password() -> None:
    with pytest.raises(SeedFileError, match="wrong key or password") as caught:
        read_pskc(RFC6030_FIGURE_7, password="qwertz")
    assert "qwertz" not in str(caught.value)


def test_password_protected_pskc_without_a_password_is_refused() -> None:
    with pytest.raises(SeedFileError, match="derived from a password: give it"):
        read_pskc(RFC6030_FIGURE_7, psk=RFC6030_PSK)


def test_a_password_for_a_pre_shared_key_file_is_refused() -> None:
    with pytest.raises(SeedFileError, match="pre-shared key, not a password"):
        read_pskc(RFC6030_FIGURE_6, password=RFC6030_PASSWORD)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (b"<IterationCount>1000<", b"<IterationCount>100000000<", "1000000 iterations"),
        (b"<KeyLength>16<", b"<KeyLength>20<", "16, 24 or 32-byte"),
        (b"<PRF/>", b'<PRF Algorithm="urn:example:md5"/>', "PRF: only HMAC-SHA1"),
        (b"#pbkdf2", b"#scrypt", "only PBKDF2"),
    ],
)
def test_unusable_pbkdf2_parameters_are_refused_before_any_work(
    old: bytes, new: bytes, message: str
) -> None:
    with pytest.raises(SeedFileError, match=message):
        read_pskc(RFC6030_FIGURE_7.replace(old, new), password=RFC6030_PASSWORD)
