"""FortiToken Mobile enrolment: the otpauth URI, and QR codes (PNG and terminal) that a real
decoder (zxing-cpp) reads back to that same URI."""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest
import zxingcpp

import otp
from otp.enrolment import ISSUER, provisioning_uri, qr_png, qr_terminal

NOW = datetime(2026, 11, 23, 3, 0, 0, tzinfo=UTC)


def decode(pixels: list[list[int]]) -> list[str]:
    """The QR codes zxing-cpp finds in a greyscale image (rows of 0..255)."""
    height, width = len(pixels), len(pixels[0])
    buffer = memoryview(bytes(v for row in pixels for v in row)).cast("B", (height, width))
    return [barcode.text for barcode in zxingcpp.read_barcodes(buffer)]


def png_pixels(png: bytes) -> list[list[int]]:
    """A greyscale PNG (as segno writes it: bit depth 1 or 8, not interlaced) as pixel rows.
    Read with the standard library, so the test needs no imaging package."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, idat = 8, {}, b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        chunks[kind] = body
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert colour == 0 and depth in (1, 8) and interlace == 0, "greyscale, 1 or 8 bits"
    stride = (width * depth + 7) // 8
    raw, rows, previous = zlib.decompress(idat), [], bytes(stride)
    for y in range(height):
        line = raw[y * (stride + 1) : (y + 1) * (stride + 1)]
        current = _unfilter(line[0], bytearray(line[1:]), previous)
        if depth == 8:
            rows.append(list(current))
        else:
            bits = [(byte >> (7 - i)) & 1 for byte in current for i in range(8)][:width]
            rows.append([255 * b for b in bits])
        previous = bytes(current)
    return rows


def _unfilter(kind: int, line: bytearray, previous: bytes) -> bytearray:
    """PNG filters 0-4, with one byte per pixel unit (bit depths of 8 or less, greyscale)."""
    for i in range(len(line)):
        left = line[i - 1] if i else 0
        up, up_left = previous[i], previous[i - 1] if i else 0
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + up) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            p = left + up - up_left
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
            pred = left if pa <= pb and pa <= pc else up if pb <= pc else up_left
            line[i] = (line[i] + pred) & 0xFF
    return line


# Compact terminal output: each character is two modules, top and bottom; blocks are light.
HALF_BLOCKS = {"█": (255, 255), "▀": (255, 0), "▄": (0, 255), " ": (0, 0)}


def terminal_pixels(text: str, scale: int = 4) -> list[list[int]]:
    """The terminal QR code as a greyscale image: characters back to modules, then scaled up."""
    lines = [line for line in text.splitlines() if line]
    width = max(len(line) for line in lines)
    modules: list[list[int]] = []
    for line in lines:
        pairs = [HALF_BLOCKS[ch] for ch in line.ljust(width)]
        modules += [[top for top, _ in pairs], [bottom for _, bottom in pairs]]
    return [[v for v in row for _ in range(scale)] for row in modules for _ in range(scale)]


@pytest.fixture
def uri() -> str:
    return provisioning_uri(otp.new_seed(), otp.TokenProfile("mobile", 8, 60), "12345678")


def test_uri_names_issuer_account_and_the_whole_profile(uri: str) -> None:
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == f"/{ISSUER}:12345678"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["issuer"] == ISSUER
    assert (query["algorithm"], query["digits"], query["period"]) == ("SHA1", "8", "60")
    assert len(query["secret"]) == 32 and "=" not in query["secret"]


def test_uri_gives_the_codes_the_server_checks(uri: str) -> None:
    """What an authenticator app computes from the URI (pyotp parses it as apps do)."""
    app = pyotp.parse_uri(uri)
    seed = parse_qs(urlsplit(uri).query)["secret"][0]
    profile = otp.TokenProfile("mobile", 8, 60)
    assert app.at(NOW) == otp.current_code(seed, profile, NOW)


def test_png_qr_code_decodes_back_to_the_same_uri(uri: str) -> None:
    assert decode(png_pixels(qr_png(uri))) == [uri]


def test_terminal_qr_code_decodes_back_to_the_same_uri(uri: str) -> None:
    text = qr_terminal(uri)
    assert max(len(line) for line in text.splitlines()) <= 80  # fits a classic terminal
    assert decode(terminal_pixels(text)) == [uri]


def test_png_decoder_of_this_test_reads_what_it_should() -> None:
    """The stdlib PNG reader above is itself checked: a QR of another text is not the URI."""
    assert decode(png_pixels(qr_png("otpauth://totp/x?secret=AAAA"))) == [
        "otpauth://totp/x?secret=AAAA"
    ]
