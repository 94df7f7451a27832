"""PSKC (RFC 6030) key containers the seed-file tests read: the RFC's own figures 6 and 7, and
containers as vendors write them (plain, and AES-256-CBC with an HMAC-SHA256 MAC)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

RFC_KEY = b"12345678901234567890"  # RFC 4226 / 6238 test seed

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
