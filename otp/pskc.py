"""PSKC key containers (RFC 6030): secrets plain, or encrypted (AES-CBC, with an HMAC-SHA1/256
MAC) under a pre-shared key (6.1) or a key derived from a password with PBKDF2 (6.2);
asymmetric encryption is refused. Every bad key package is reported, never quoting a key."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from otp import OtpType
from otp.seed_records import (
    SeedFileError,
    SeedRecord,
    checked_key_length,
    is_number,
    make_record,
    repeated_serials,
    whole_number,
)

PSKC = "urn:ietf:params:xml:ns:keyprov:pskc"
XENC = "http://www.w3.org/2001/04/xmlenc#"
XENC11 = "http://www.w3.org/2009/xmlenc11#"
DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"p": PSKC, "xenc": XENC, "xenc11": XENC11, "ds": DS}
PBKDF2 = "http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#pbkdf2"
# PBKDF2's pseudo-random function: HMAC-SHA1 when the file names none (RFC 6030, figure 7).
PBKDF2_PRFS = {
    "": "sha1",
    f"{DS}hmac-sha1": "sha1",
    "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256": "sha256",
}
# A file asking for more would make the import a denial of service (RFC 6030's example: 1000).
MAX_PBKDF2_ITERATIONS = 1_000_000
AES_CBC = {f"{XENC}aes128-cbc": 16, f"{XENC}aes192-cbc": 24, f"{XENC}aes256-cbc": 32}
HMACS = {
    f"{DS}hmac-sha1": hashlib.sha1,
    "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256": hashlib.sha256,
}
ALGORITHMS: dict[str, OtpType] = {
    f"{PSKC}{sep}{name}": name  # type: ignore[misc]
    for sep in (":", "#")
    for name in ("totp", "hotp")
}


def read_pskc(
    data: bytes, psk: bytes | None = None, password: str | None = None
) -> list[SeedRecord]:
    """Every key of a PSKC container, or SeedFileError listing every bad key package.

    When secrets are encrypted: `psk`, the pre-shared key (16, 24 or 32 bytes), or `password`,
    from which the container's PBKDF2 parameters derive the key. Documents with a DTD are
    refused (no entity tricks: a seed file never needs one).
    """
    if b"<!DOCTYPE" in data.upper() or b"<!ENTITY" in data.upper():
        raise SeedFileError(["PSKC: a document type declaration is not allowed"])
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise SeedFileError([f"PSKC: not well-formed XML ({e})"]) from None
    if root.tag != f"{{{PSKC}}}KeyContainer":
        raise SeedFileError(["PSKC: the root element must be a KeyContainer (RFC 6030)"])
    if root.get("Version") != "1.0":
        raise SeedFileError(["PSKC: only version 1.0 (RFC 6030) is read"])
    try:
        key = _container_key(root, psk, password)
        mac = _mac_key(root, key)
    except ValueError as e:
        raise SeedFileError([f"PSKC: {e}"]) from None
    records: list[SeedRecord] = []
    problems: list[str] = []
    packages = root.findall("p:KeyPackage", NS)
    for n, package in enumerate(packages, start=1):
        where = f"KeyPackage {n}"
        try:
            records.append(_pskc_record(where, package, key, mac))
        except ValueError as e:
            problems.append(f"{where}: {e}")
    if not packages:
        problems.append("PSKC: the container holds no KeyPackage")
    problems.extend(repeated_serials(records))
    if problems:
        raise SeedFileError(problems)
    return records


def _container_key(root: ET.Element, psk: bytes | None, password: str | None) -> bytes | None:
    """The key that encrypts the container's secrets: the pre-shared key (6.1), or the key
    derived from the password with the container's PBKDF2 parameters (6.2)."""
    derived = root.find("p:EncryptionKey/xenc11:DerivedKey", NS)
    if derived is None:
        if password is not None and root.find(".//p:EncryptedValue", NS) is not None:
            raise ValueError("the secrets are encrypted with a pre-shared key, not a password")
        return psk
    method = derived.find("xenc11:KeyDerivationMethod", NS)
    if method is None or method.get("Algorithm") != PBKDF2:
        raise ValueError("only PBKDF2 key derivation is supported (RFC 6030, 6.2)")
    if password is None:
        raise ValueError("the secrets are encrypted with a key derived from a password: give it")
    # The parameters' own elements carry no namespace in RFC 6030's example: found by name.
    params = {element.tag.rpartition("}")[2]: element for element in method.iter()}
    salt = _b64(_element_text(params.get("Specified")), "PBKDF2 Salt")
    count = _element_text(params.get("IterationCount"))
    iterations = int(count) if is_number(count) and len(count) <= 12 else 0
    length = whole_number(_element_text(params.get("KeyLength")) or "16", "PBKDF2 KeyLength")
    prf = params.get("PRF")
    digest = PBKDF2_PRFS.get(prf.get("Algorithm", "") if prf is not None else "")
    if digest is None:
        raise ValueError("PBKDF2 PRF: only HMAC-SHA1 and HMAC-SHA256 are supported")
    if not salt or not 1 <= iterations <= MAX_PBKDF2_ITERATIONS or length not in (16, 24, 32):
        raise ValueError(
            f"PBKDF2: a salt, 1 to {MAX_PBKDF2_ITERATIONS} iterations and a 16, 24 or 32-byte"
            " key are required"
        )
    return hashlib.pbkdf2_hmac(digest, password.encode(), salt, iterations, length)


def _element_text(element: ET.Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""


@dataclass(frozen=True)
class _Mac:
    key: bytes = field(repr=False)
    digest: Callable[[], Any]  # a hashlib constructor


def _mac_key(root: ET.Element, key: bytes | None) -> _Mac | None:
    method = root.find("p:MACMethod", NS)
    if method is None:
        return None
    digest = HMACS.get(method.get("Algorithm", ""))
    if digest is None:
        raise ValueError("MACMethod: only hmac-sha1 and hmac-sha256 are supported")
    encrypted = method.find("p:MACKey", NS)
    if encrypted is None:
        raise ValueError("MACMethod without a MACKey")
    return _Mac(_decrypt(encrypted, key, None), digest)


def _pskc_record(
    where: str, package: ET.Element, container_key: bytes | None, mac: _Mac | None
) -> SeedRecord:
    keys = package.findall("p:Key", NS)
    if len(keys) != 1:
        raise ValueError(f"{len(keys)} Key elements, expected 1")
    key = keys[0]
    otp_type = ALGORITHMS.get(key.get("Algorithm", ""))
    if otp_type is None:
        raise ValueError("Key Algorithm: only the PSKC totp and hotp algorithms are read")
    serial = _text(package, "p:DeviceInfo/p:SerialNo") or key.get("Id", "")
    response = key.find("p:AlgorithmParameters/p:ResponseFormat", NS)
    if response is None or response.get("Encoding", "DECIMAL") != "DECIMAL":
        raise ValueError("ResponseFormat: a decimal Length is required")
    digits = whole_number(response.get("Length", ""), "ResponseFormat Length")
    secret = key.find("p:Data/p:Secret", NS)
    if secret is None:
        raise ValueError("no Data/Secret")
    raw = checked_key_length(_value(secret, container_key, mac))
    period = None
    counter = None
    if otp_type == "totp":
        period = whole_number(_data_value(key, "TimeInterval") or "30", "TimeInterval")
        if int(_data_value(key, "Time") or "0") != 0:
            raise ValueError("Time (T0) other than 0 is not supported")
    else:
        counter = whole_number(_data_value(key, "Counter") or "0", "Counter")
    expiry = _text(key, "p:Policy/p:ExpiryDate") or _text(package, "p:DeviceInfo/p:ExpiryDate")
    return make_record(
        where, serial, raw, otp_type, digits, period, _xml_date(expiry), counter=counter
    )


def _text(element: ET.Element, path: str) -> str:
    found = element.find(path, NS)
    return (found.text or "").strip() if found is not None else ""


def _data_value(key: ET.Element, name: str) -> str:
    return _text(key, f"p:Data/p:{name}/p:PlainValue")


def _xml_date(text: str) -> date | None:
    """An xs:dateTime's date (the token may be used through that day), or None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        raise ValueError("ExpiryDate: not an xs:dateTime") from None


def _value(secret: ET.Element, key: bytes | None, mac: _Mac | None) -> bytes:
    plain = secret.find("p:PlainValue", NS)
    if plain is not None:
        return _b64(plain.text, "Secret PlainValue")
    encrypted = secret.find("p:EncryptedValue", NS)
    if encrypted is None:
        raise ValueError("Secret has neither PlainValue nor EncryptedValue")
    if mac is None:
        raise ValueError("an encrypted Secret needs the container's MACMethod (RFC 6030, 6.1.1)")
    value_mac = secret.find("p:ValueMAC", NS)
    if value_mac is None:
        raise ValueError("an encrypted Secret needs its ValueMAC")
    return _decrypt(encrypted, key, (mac, _b64(value_mac.text, "ValueMAC")))


def _decrypt(encrypted: ET.Element, key: bytes | None, check: tuple[_Mac, bytes] | None) -> bytes:
    """AES-CBC with the container's key (pre-shared or derived); the IV leads the CipherValue.
    The MAC (over IV and ciphertext) is checked before anything is decrypted."""
    method = encrypted.find("xenc:EncryptionMethod", NS)
    algorithm = method.get("Algorithm", "") if method is not None else ""
    if algorithm not in AES_CBC:
        raise ValueError("only AES-CBC encryption (a pre-shared key or a password) is supported")
    if key is None:
        raise ValueError("the secrets are encrypted: give the pre-shared key")
    if len(key) != AES_CBC[algorithm]:
        raise ValueError(f"the key must have {AES_CBC[algorithm]} bytes for {algorithm}")
    cipher_value = encrypted.find("xenc:CipherData/xenc:CipherValue", NS)
    blob = _b64(cipher_value.text if cipher_value is not None else None, "CipherValue")
    if len(blob) < 32 or len(blob) % 16:
        raise ValueError("CipherValue: not AES-CBC (IV and whole blocks)")
    if check is not None:
        mac, expected = check
        actual = hmac.new(mac.key, blob, mac.digest).digest()
        if not hmac.compare_digest(actual, expected):
            raise ValueError("ValueMAC does not match (wrong key or password, or altered file)")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(blob[:16])).decryptor()
    padded = decryptor.update(blob[16:]) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise ValueError("cannot decrypt (wrong key or password?)") from None


def _b64(text: str | None, name: str) -> bytes:
    try:
        return base64.b64decode(re.sub(r"\s", "", text or ""), validate=True)
    except binascii.Error:
        raise ValueError(f"{name}: not base64") from None
