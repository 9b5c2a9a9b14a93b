"""New readers (JPEG, 16-bit PNG, MetaImage, NRRD), their spacing, and the hardening of issue #32:
regular files only, truncated data refused, absurd spacing refused. Synthetic files only."""

from __future__ import annotations

import gzip
import io as _io
import os
import struct
import threading
import zlib

import numpy as np
import pytest

from lsn_fast.io.presentation import BONE_ATTENUATION, SOFT_ATTENUATION, presentation_to_attenuation
from lsn_fast.io.readers import RadiographError, RadiographWarning, read_radiograph

from PIL import Image  # noqa: E402


def hand_like(H=64, W=80, air=40, soft=90, bone=200):
    """Presentation-style image: a background frame, a soft-tissue band and a bone bar."""
    v = np.full((H, W), air, np.uint8)
    v[8:-8, 16:-16] = soft
    v[12:-12, 32:-32] = bone
    return v


def png_bytes(rows_data: bytes, w: int, h: int, depth=8, color=0) -> bytes:
    def chunk(t, b):
        return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows_data)) + chunk(b"IEND", b"")


def test_png_complete_stream_with_missing_rows_is_refused(tmp_path):
    # a complete zlib stream that holds 10 of 400 rows: the old reader returned 400 rows, 390 of them 0
    w, h = 50, 400
    rows = b"".join(b"\x00" + bytes([100 + (r % 50)] * w) for r in range(10))
    p = tmp_path / "short.png"
    p.write_bytes(png_bytes(rows, w, h))
    with pytest.raises(RadiographError, match="truncated PNG.*10 of 400 rows"):
        read_radiograph(p, spacing_mm=0.1)
    full = b"".join(b"\x00" + bytes([100 + (r % 50)] * w) for r in range(h))
    p.write_bytes(png_bytes(full, w, h))
    assert read_radiograph(p, spacing_mm=0.1).shape == (h, w)


def test_png_16_bit_and_jpeg_read(tmp_path):
    v = hand_like().astype(np.uint16) * 300
    p16 = tmp_path / "a16.png"
    Image.fromarray(v).save(p16)
    r = read_radiograph(p16, spacing_mm=0.1)
    assert r.source["bits"] == 16 and r.shape == v.shape
    pj = tmp_path / "a.jpg"
    Image.fromarray(hand_like()).save(pj, quality=95)
    r = read_radiograph(pj, spacing_mm=0.2)
    assert r.source["format"] == "jpeg" and r.shape == (64, 80) and r.spacing_mm == 0.2
    assert float(r.image[32, 40]) > float(r.image[10, 20]) > float(r.image[2, 2])  # bone > soft > air
    data = pj.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(RadiographError):
        read_radiograph(tmp_path / "cut.jpg", spacing_mm=0.1)


def write_mha(path, arr, spacing=(0.12, 0.15), compressed=False, etype="MET_UCHAR", extra="", truncate=0):
    raw = arr.tobytes()
    if compressed:
        raw = zlib.compress(raw)
    hdr = (f"ObjectType = Image\nNDims = 2\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
           f"CompressedData = {compressed}\n{extra}ElementSpacing = {spacing[0]} {spacing[1]}\n"
           f"DimSize = {arr.shape[1]} {arr.shape[0]}\nElementType = {etype}\nElementDataFile = LOCAL\n")
    data = hdr.encode() + raw
    path.write_bytes(data[: len(data) - truncate] if truncate else data)
    return path


@pytest.mark.parametrize("compressed", [False, True])
def test_metaimage_reads_values_and_spacing(tmp_path, compressed):
    v = hand_like()
    p = write_mha(tmp_path / "a.mha", v, spacing=(0.15, 0.15), compressed=compressed)
    r = read_radiograph(p, kind="attenuation")
    assert r.source["format"] == "metaimage" and r.spacing_mm == pytest.approx(0.15)
    np.testing.assert_array_equal(r.image.numpy(), v.astype(np.float32))
    v16 = (hand_like().astype(np.uint16) * 250)
    p = write_mha(tmp_path / "b.mha", v16, etype="MET_USHORT", spacing=(0.1, 0.1), compressed=compressed)
    np.testing.assert_array_equal(read_radiograph(p, kind="attenuation").image.numpy(), v16.astype(np.float32))


def test_metaimage_detached_mhd(tmp_path):
    v = hand_like()
    (tmp_path / "a.raw").write_bytes(v.tobytes())
    (tmp_path / "a.mhd").write_text("ObjectType = Image\nNDims = 2\nDimSize = 80 64\nElementSpacing = 0.1 0.1\n"
                                    "ElementType = MET_UCHAR\nElementDataFile = a.raw\n")
    r = read_radiograph(tmp_path / "a.mhd", kind="attenuation")
    np.testing.assert_array_equal(r.image.numpy(), v.astype(np.float32))


@pytest.mark.parametrize("compressed", [False, True])
def test_metaimage_truncated_is_refused(tmp_path, compressed):
    v = hand_like()
    if compressed:  # a complete zlib stream with half the rows
        p = tmp_path / "c.mha"
        hdr = ("ObjectType = Image\nNDims = 2\nCompressedData = True\nDimSize = 80 64\nElementSpacing = 0.1 0.1\n"
               "ElementType = MET_UCHAR\nElementDataFile = LOCAL\n")
        p.write_bytes(hdr.encode() + zlib.compress(v[:32].tobytes()))
    else:
        p = write_mha(tmp_path / "c.mha", v, truncate=100)
    with pytest.raises(RadiographError, match="truncated MetaImage"):
        read_radiograph(p)


@pytest.mark.parametrize("bad", ["1e308 1e308", "nan 0.1", "0 0.1", "-0.1 -0.1"])
def test_metaimage_absurd_spacing_is_refused(tmp_path, bad):
    v = hand_like()
    p = tmp_path / "s.mha"
    p.write_bytes((f"ObjectType = Image\nNDims = 2\nDimSize = 80 64\nElementSpacing = {bad}\n"
                   "ElementType = MET_UCHAR\nElementDataFile = LOCAL\n").encode() + v.tobytes())
    with pytest.raises(RadiographError, match="not a radiograph pixel spacing"):
        read_radiograph(p)


def test_metaimage_oversized_declaration_refused_before_reading(tmp_path):
    p = tmp_path / "big.mha"
    p.write_bytes(b"ObjectType = Image\nNDims = 2\nDimSize = 100000 100000\nElementType = MET_UCHAR\n"
                  b"ElementDataFile = LOCAL\n" + b"\0" * 100)
    with pytest.raises(RadiographError, match="exceeds max_pixels"):
        read_radiograph(p)


@pytest.mark.parametrize("encoding", ["raw", "gzip"])
def test_nrrd_reads_values_and_spacing(tmp_path, encoding):
    v = (hand_like().astype(np.uint16) * 100)
    raw = v.astype("<u2").tobytes()
    payload = raw if encoding == "raw" else gzip.compress(raw)
    hdr = (f"NRRD0004\ntype: uint16\ndimension: 2\nsizes: 80 64\nendian: little\nencoding: {encoding}\n"
           "space directions: (0.13,0) (0,0.13)\n\n")
    p = tmp_path / "a.nrrd"
    p.write_bytes(hdr.encode() + payload)
    r = read_radiograph(p, kind="attenuation")
    assert r.source["format"] == "nrrd" and r.spacing_mm == pytest.approx(0.13)
    np.testing.assert_array_equal(r.image.numpy(), v.astype(np.float32))
    p.write_bytes(hdr.encode() + payload[: len(payload) - 50])
    with pytest.raises(RadiographError, match="truncated NRRD"):
        read_radiograph(p)


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    result = {}

    def go():
        try:
            read_radiograph(fifo, spacing_mm=0.1)
        except Exception as e:  # noqa: BLE001
            result["e"] = e

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(5.0)
    if t.is_alive():  # unblock the old reader so the test process can end
        with open(fifo, "wb"):
            pass
        pytest.fail("read_radiograph blocked on a FIFO")
    assert isinstance(result.get("e"), RadiographError) and "FIFO" in str(result["e"])


def test_dicom_absurd_pixel_spacing_is_not_used():
    pydicom = pytest.importorskip("pydicom")
    from test_io import A, make_dicom, present  # the DICOM factory of the reader tests
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        p = make_dicom(Path(d) / "s.dcm", present(A, 12), bits_allocated=16, bits_stored=12,
                       intent="FOR PRESENTATION", pixel_spacing=(1e308, 1e308))
        with pytest.warns(RadiographWarning, match="not a radiograph pixel spacing"):
            r = read_radiograph(p)
        assert r.spacing_mm is None
    del pydicom


def test_presentation_anchored_maps_anchors_to_phantom_levels():
    v = hand_like().astype(np.float32)
    # a gamma curve on top: anchored conversion must still put soft/bone medians at the phantom levels
    g = 255 * (v / 255) ** 0.6
    y, info = presentation_to_attenuation(g)
    assert y[2, 2] == pytest.approx(0.0, abs=1e-6)
    assert float(np.median(y[10, 18:30])) == pytest.approx(SOFT_ATTENUATION, rel=1e-3)
    assert float(np.median(y[32, 34:46])) == pytest.approx(BONE_ATTENUATION, rel=1e-3)
    with pytest.raises(ValueError):
        presentation_to_attenuation(np.full((32, 32), 7.0))
