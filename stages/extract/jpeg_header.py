"""What a JPEG file's header says, read without decoding, to decide which decoder may take the file.

The tensor path hands a file to the device's batched JPEG decoder only when that decoder is known to treat
it as ``images.py``'s policy says: 8-bit baseline Huffman JPEG, greyscale or YCbCr, no EXIF rotation, a
complete stream (ends with EOI), within the pixel and aspect-ratio limits. Everything else (PNG, CMYK,
progressive, arithmetic-coded, 12-bit, rotated, truncated, too large) is decoded by Pillow with the full
policy, so decisions and error messages stay those of ``--decode pil``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from stages.extract.images import MAX_ASPECT_RATIO, MAX_IMAGE_PIXELS

_BASELINE_SOF = {0xC0, 0xC1}  # baseline and extended sequential, Huffman-coded
_ANY_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, 0xD8} | set(range(0xD0, 0xD8))
_YCBCR_IDS = (1, 2, 3)


@dataclass(frozen=True)
class JpegHeader:
    width: int
    height: int
    components: int
    precision: int
    sof: int  # the frame marker: 0xC0 baseline, 0xC2 progressive, ...
    component_ids: tuple[int, ...]
    orientation: int  # EXIF orientation, 1 when absent
    adobe: bool  # an Adobe APP14 segment (colour transform flags, CMYK/YCCK files)
    complete: bool  # the stream ends with the EOI marker


def read_header(data: bytes) -> JpegHeader | None:
    """The frame header of a JPEG stream, or None when ``data`` is not one this parser can read."""
    if data[:2] != b"\xff\xd8":
        return None
    at, orientation, adobe, frame = 2, 1, False, None
    try:
        while at + 4 <= len(data):
            if data[at] != 0xFF:
                return None
            marker = data[at + 1]
            if marker == 0xFF:  # fill byte
                at += 1
                continue
            if marker in _STANDALONE:
                at += 2
                continue
            length = struct.unpack(">H", data[at + 2:at + 4])[0]
            segment = data[at + 4:at + 2 + length]
            if length < 2 or len(segment) != length - 2:
                return None
            if marker == 0xE1 and segment[:6] == b"Exif\x00\x00":
                orientation = _exif_orientation(segment[6:])
            elif marker == 0xEE and segment[:5] == b"Adobe":
                adobe = True
            elif marker in _ANY_SOF:
                precision, height, width, components = struct.unpack(">BHHB", segment[:6])
                ids = tuple(segment[6 + 3 * i] for i in range(components))
                frame = (width, height, components, precision, marker, ids)
            elif marker == 0xDA:  # start of scan: the header is over
                break
            at += 2 + length
    except (struct.error, IndexError):
        return None
    if frame is None:
        return None
    width, height, components, precision, sof, ids = frame
    return JpegHeader(width, height, components, precision, sof, ids, orientation, adobe,
                      complete=data[-2:] == b"\xff\xd9")


def device_decodable(header: JpegHeader | None) -> bool:
    """Whether a batched device decoder gives this file's pixels as Pillow's policy would (see the module)."""
    if header is None or not header.complete or header.adobe or header.orientation != 1:
        return False
    if header.sof not in _BASELINE_SOF or header.precision != 8 or header.width < 1 or header.height < 1:
        return False
    if header.components == 3:
        if header.component_ids != _YCBCR_IDS:  # 'R','G','B' ids mean no colour transform: libjpeg's own guess
            return False
    elif header.components != 1:
        return False
    longer, shorter = max(header.width, header.height), min(header.width, header.height)
    return header.width * header.height <= MAX_IMAGE_PIXELS and longer <= MAX_ASPECT_RATIO * shorter


def _exif_orientation(tiff: bytes) -> int:
    """The orientation tag (0x0112) of IFD0 in an EXIF TIFF block; 0 (unknown) when it cannot be read."""
    try:
        order = {b"II": "<", b"MM": ">"}[tiff[:2]]
        (ifd,) = struct.unpack(order + "I", tiff[4:8])
        (count,) = struct.unpack(order + "H", tiff[ifd:ifd + 2])
        for i in range(count):
            entry = tiff[ifd + 2 + 12 * i: ifd + 14 + 12 * i]
            tag, kind = struct.unpack(order + "HH", entry[:4])
            if tag == 0x0112:
                return struct.unpack(order + "H", entry[8:10])[0] if kind == 3 else 0
        return 1
    except (KeyError, struct.error):
        return 0
