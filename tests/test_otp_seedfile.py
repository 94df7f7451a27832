"""Seed files: the OATH CSV of docs/design.md and PSKC (RFC 6030), read whole or not at all, and
never quoting a key in an error."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from datetime import date

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from otp.seedfile import SeedFileError, read_pskc, read_seed_csv, read_seed_file

HEADER = "serial,key,type,digits,period,expiry"
RFC_KEY = b"12345678901234567890"  # RFC 4226 / 6238 test seed
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

PSKC_NS = (
    'xmlns="urn:ietf:params:xml:ns:keyprov:pskc" '
    'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" '
    'xmlns:xenc="http://www.w3.org/2001/04/xmlenc#"'
)
XENC = "http://www.w3.org/2001/04/xmlenc#"

# RFC 6030, figure 6: an HOTP key encrypted with AES-128-CBC under the pre-shared key
# 12345678901234567890123456789012 (hex); the MAC key is encrypted with the same key.
RFC6030_FIGURE_6 = f"""<?xml version="1.0" encoding="UTF-8"?>
<KeyContainer Version="1.0" {PSKC_NS}>
  <EncryptionKey><ds:KeyName>Pre-shared-key</ds:KeyName></EncryptionKey>
  <MACMethod Algorithm="http://www.w3.org/2000/09/xmldsig#hmac-sha1">
    <MACKey>
      <xenc:EncryptionMethod Algorithm="{XENC}aes128-cbc"/>
      <xenc:CipherData><xenc:CipherValue>
        ESIzRFVmd4iZABEiM0RVZgKn6WjLaTC1sbeBMSvIhRejN9vJa2BOlSaMrR7I5wSX
      </xenc:CipherValue></xenc:CipherData>
    </MACKey>
  </MACMethod>
  <KeyPackage>
    <DeviceInfo><Manufacturer>Manufacturer</Manufacturer><SerialNo>987654321</SerialNo></DeviceInfo>
    <CryptoModuleInfo><Id>CM_ID_001</Id></CryptoModuleInfo>
    <Key Id="12345678" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:hotp">
      <Issuer>Issuer</Issuer>
      <AlgorithmParameters><ResponseFormat Length="8" Encoding="DECIMAL"/></AlgorithmParameters>
      <Data>
        <Secret>
          <EncryptedValue>
            <xenc:EncryptionMethod Algorithm="{XENC}aes128-cbc"/>
            <xenc:CipherData><xenc:CipherValue>
              AAECAwQFBgcICQoLDA0OD+cIHItlB3Wra1DUpxVvOx2lef1VmNPCMl8jwZqIUqGv
            </xenc:CipherValue></xenc:CipherData>
          </EncryptedValue>
          <ValueMAC>Su+NvtQfmvfJzF6bmQiJqoLRExc=</ValueMAC>
        </Secret>
        <Counter><PlainValue>0</PlainValue></Counter>
      </Data>
    </Key>
  </KeyPackage>
</KeyContainer>
""".encode()
RFC6030_PSK = bytes.fromhex("12345678901234567890123456789012")


def plain_totp_container(serial: str = "FTK200000001", period: int = 60) -> bytes:
    secret = base64.b64encode(RFC_KEY).decode()
    return f"""<KeyContainer Version="1.0" {PSKC_NS}>
  <KeyPackage>
    <DeviceInfo>
      <Manufacturer>Fortinet</Manufacturer><SerialNo>{serial}</SerialNo>
      <ExpiryDate>2029-04-30T23:59:59Z</ExpiryDate>
    </DeviceInfo>
    <Key Id="1" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:totp">
      <AlgorithmParameters><ResponseFormat Length="6" Encoding="DECIMAL"/></AlgorithmParameters>
      <Data>
        <Secret><PlainValue>{secret}</PlainValue></Secret>
        <Time><PlainValue>0</PlainValue></Time>
        <TimeInterval><PlainValue>{period}</PlainValue></TimeInterval>
      </Data>
    </Key>
  </KeyPackage>
</KeyContainer>""".encode()


def encrypted_totp_container(psk: bytes, secret: bytes, tamper: bool = False) -> bytes:
    """A container as a vendor would write it: AES-256-CBC, HMAC-SHA256 over IV+ciphertext."""

    def encrypt(value: bytes) -> bytes:
        iv = os.urandom(16)
        padder = padding.PKCS7(128).padder()
        padded = padder.update(value) + padder.finalize()
        encryptor = Cipher(algorithms.AES(psk), modes.CBC(iv)).encryptor()
        return iv + encryptor.update(padded) + encryptor.finalize()

    mac_key = os.urandom(32)
    blob = encrypt(secret)
    mac = hmac.new(mac_key, blob, hashlib.sha256).digest()
    if tamper:
        blob = blob[:-1] + bytes([blob[-1] ^ 1])
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"""<KeyContainer Version="1.0" {PSKC_NS}>
  <EncryptionKey><ds:KeyName>Pre-shared-key</ds:KeyName></EncryptionKey>
  <MACMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#hmac-sha256">
    <MACKey>
      <xenc:EncryptionMethod Algorithm="{XENC}aes256-cbc"/>
      <xenc:CipherData><xenc:CipherValue>{b64(encrypt(mac_key))}</xenc:CipherValue></xenc:CipherData>
    </MACKey>
  </MACMethod>
  <KeyPackage>
    <DeviceInfo><SerialNo>FTKMOB0001</SerialNo></DeviceInfo>
    <Key Id="1" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc#totp">
      <AlgorithmParameters><ResponseFormat Length="8" Encoding="DECIMAL"/></AlgorithmParameters>
      <Data>
        <Secret>
          <EncryptedValue>
            <xenc:EncryptionMethod Algorithm="{XENC}aes256-cbc"/>
            <xenc:CipherData><xenc:CipherValue>{b64(blob)}</xenc:CipherValue></xenc:CipherData>
          </EncryptedValue>
          <ValueMAC>{b64(mac)}</ValueMAC>
        </Secret>
        <TimeInterval><PlainValue>30</PlainValue></TimeInterval>
      </Data>
    </Key>
  </KeyPackage>
</KeyContainer>""".encode()


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


# RFC 6030, figure 7 (section 6.2), as printed: an HOTP key encrypted with AES-128-CBC under a
# key derived from the password "qwerty" with PBKDF2 (HMAC-SHA1, 1000 iterations, 16 bytes); the
# MAC key is encrypted with the derived key too. Its parameters' elements carry no namespace.
RFC6030_FIGURE_7 = b"""<?xml version="1.0" encoding="UTF-8"?>
<pskc:KeyContainer
  xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc"
  xmlns:xenc11="http://www.w3.org/2009/xmlenc11#"
  xmlns:pkcs5=
  "http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#"
  xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" Version="1.0">
    <pskc:EncryptionKey>
        <xenc11:DerivedKey>
            <xenc11:KeyDerivationMethod
              Algorithm=
 "http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#pbkdf2">
                <pkcs5:PBKDF2-params>
                    <Salt>
                        <Specified>Ej7/PEpyEpw=</Specified>
                    </Salt>
                    <IterationCount>1000</IterationCount>
                    <KeyLength>16</KeyLength>
                    <PRF/>
                </pkcs5:PBKDF2-params>
            </xenc11:KeyDerivationMethod>
            <xenc:ReferenceList>
                <xenc:DataReference URI="#ED"/>
            </xenc:ReferenceList>
            <xenc11:MasterKeyName>My Password 1</xenc11:MasterKeyName>
        </xenc11:DerivedKey>
    </pskc:EncryptionKey>
    <pskc:MACMethod
        Algorithm="http://www.w3.org/2000/09/xmldsig#hmac-sha1">
        <pskc:MACKey>
            <xenc:EncryptionMethod
            Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>
            <xenc:CipherData>
                <xenc:CipherValue>
2GTTnLwM3I4e5IO5FkufoOEiOhNj91fhKRQBtBJYluUDsPOLTfUvoU2dStyOwYZx
                </xenc:CipherValue>
            </xenc:CipherData>
        </pskc:MACKey>
    </pskc:MACMethod>
    <pskc:KeyPackage>
        <pskc:DeviceInfo>
            <pskc:Manufacturer>TokenVendorAcme</pskc:Manufacturer>
            <pskc:SerialNo>987654321</pskc:SerialNo>
        </pskc:DeviceInfo>
        <pskc:CryptoModuleInfo>
            <pskc:Id>CM_ID_001</pskc:Id>
        </pskc:CryptoModuleInfo>
        <pskc:Key Algorithm=
        "urn:ietf:params:xml:ns:keyprov:pskc:hotp" Id="123456">
            <pskc:Issuer>Example-Issuer</pskc:Issuer>
            <pskc:AlgorithmParameters>
                <pskc:ResponseFormat Length="8" Encoding="DECIMAL"/>
            </pskc:AlgorithmParameters>
            <pskc:Data>
                <pskc:Secret>
                <pskc:EncryptedValue Id="ED">
                    <xenc:EncryptionMethod
                        Algorithm=
"http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>
                        <xenc:CipherData>
                            <xenc:CipherValue>
  oTvo+S22nsmS2Z/RtcoF8Hfh+jzMe0RkiafpoDpnoZTjPYZu6V+A4aEn032yCr4f
                        </xenc:CipherValue>
                    </xenc:CipherData>
                    </pskc:EncryptedValue>
                    <pskc:ValueMAC>LP6xMvjtypbfT9PdkJhBZ+D6O4w=
                    </pskc:ValueMAC>
                </pskc:Secret>
            </pskc:Data>
        </pskc:Key>
    </pskc:KeyPackage>
</pskc:KeyContainer>
"""
RFC6030_PASSWORD = "qwerty"


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
