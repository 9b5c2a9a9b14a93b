"""Readers (DICOM/PNG/TIFF), ROI crops and the PNG writer of lsn_fast.io."""

from __future__ import annotations

import io as _io
import math
import os
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pydicom = pytest.importorskip("pydicom")
tifffile = pytest.importorskip("tifffile")
from PIL import Image  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, RLELossless, generate_uid  # noqa: E402

from lsn_fast.io.readers import (  # noqa: E402
    AIR_PERCENTILE,
    LOW_PERCENTILE,
    NOMINAL_ATTENUATION,
    Radiograph,
    RadiographError,
    RadiographWarning,
    RoiCrop,
    crop_roi,
    read_radiograph,
    write_png,
)

# ------------------------------------------------------------------------------------------------
# synthetic data
# ------------------------------------------------------------------------------------------------


def attenuation_image(H=40, W=48):
    """Known attenuation: air border (0), a soft-tissue finger (0.4), a Gaussian bone blob and
    bars; non-square so a transposition shows."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5
    a = np.zeros((H, W))
    finger = (np.abs(x - W / 2) < W * 0.3) & (y > 3) & (y < H - 3)
    a[finger] = 0.4
    a += 1.1 * np.exp(-((x - W / 2) ** 2 + (y - H / 2) ** 2) / (2 * 5.0**2)) * finger
    a[(y > 6) & (y < 9) & finger] += 0.3  # a bar
    return a


A = attenuation_image()


def present(a, bits):
    """For-presentation encoding: log-like, bone bright (MONOCHROME2)."""
    return np.rint(a / a.max() * (2**bits - 1))


def counts(a, n0):
    """For-processing encoding: proportional to detector counts."""
    return np.rint(n0 * np.exp(-a))


def expected_presentation(v):
    lo, hi = np.percentile(v, [LOW_PERCENTILE, AIR_PERCENTILE])
    return np.maximum(NOMINAL_ATTENUATION * (v - lo) / (hi - lo), 0)


def check_monotone_corr(y, a, min_corr=0.99):
    y = np.asarray(y, dtype=np.float64)
    assert y.shape == a.shape
    assert np.isfinite(y).all()
    assert np.corrcoef(y.ravel(), a.ravel())[0, 1] > min_corr
    order = np.argsort(a.ravel(), kind="stable")
    assert np.all(np.diff(y.ravel()[order]) >= -1e-5), "mapping from true attenuation is not monotonic"
    assert abs(float(np.median(y[a == 0]))) < 1e-6  # air ~ 0


def make_dicom(path, stored, *, photometric="MONOCHROME2", bits_allocated=16, bits_stored=None, signed=False,
               slope=None, intercept=None, intent=None, pixel_spacing=None, imager_spacing=None, rle=False,
               rows=None, columns=None, pixel_bytes=None):
    stored = np.asarray(stored)
    bits_stored = bits_stored or bits_allocated
    dtype = {8: np.uint8, 16: np.uint16}[bits_allocated]
    if signed:
        dtype = {8: np.int8, 16: np.int16}[bits_allocated]
    arr = stored.astype(dtype)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows = rows if rows is not None else arr.shape[0]
    ds.Columns = columns if columns is not None else arr.shape[1]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(signed)
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
    if intent is not None:
        ds.PresentationIntentType = intent
    if pixel_spacing is not None:
        ds.PixelSpacing = list(pixel_spacing)
    if imager_spacing is not None:
        ds.ImagerPixelSpacing = list(imager_spacing)
    ds.PixelData = arr.tobytes() if pixel_bytes is None else pixel_bytes
    if rle:
        ds.compress(RLELossless, arr)
    ds.save_as(path, enforce_file_format=True)
    return path


def read(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RadiographWarning)
        return read_radiograph(path, **kw)


# ------------------------------------------------------------------------------------------------
# DICOM
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 12, 16])
@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_dicom_presentation_round_trip(tmp_path, bits, photometric):
    v = present(A, bits)
    stored = v if photometric == "MONOCHROME2" else (2**bits - 1) - v  # MONOCHROME1: bone dark
    p = make_dicom(tmp_path / "a.dcm", stored, photometric=photometric, bits_allocated=8 if bits == 8 else 16,
                   bits_stored=bits, intent="FOR PRESENTATION", pixel_spacing=(0.15, 0.15))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RadiographWarning)  # PixelSpacing present: no warning
        r = read_radiograph(p)
    assert isinstance(r, Radiograph) and r.image.dtype == torch.float32 and r.image.shape == A.shape
    assert r.spacing_mm == pytest.approx(0.15)
    assert r.source["kind"] == "presentation" and r.source["photometric"] == photometric
    assert r.source["spacing_source"] == "PixelSpacing" and r.source["bits_stored"] == bits
    assert "1.2.840.10008.1.2.1" in r.source["transfer_syntax"]
    check_monotone_corr(r.image.numpy(), A)
    np.testing.assert_allclose(r.image.numpy(), expected_presentation(v), atol=1e-5)  # inverted correctly
    assert float(np.percentile(r.image.numpy(), AIR_PERCENTILE)) == pytest.approx(NOMINAL_ATTENUATION, rel=1e-4)


@pytest.mark.parametrize("bits,n0", [(12, 4000), (16, 30000)])
def test_dicom_for_processing_raw(tmp_path, bits, n0):
    p = make_dicom(tmp_path / "raw.dcm", counts(A, n0), bits_stored=bits, intent="FOR PROCESSING",
                   imager_spacing=(0.1, 0.1))
    with pytest.warns(RadiographWarning, match="ImagerPixelSpacing"):
        r = read_radiograph(p)
    assert r.source["kind"] == "raw" and r.source["air_level"] == pytest.approx(n0)
    assert r.spacing_mm == pytest.approx(0.1) and r.source["spacing_source"] == "ImagerPixelSpacing"
    # documented conversion recovers the attenuation up to count quantization
    np.testing.assert_allclose(r.image.numpy(), A, atol=2.0 / (n0 * math.exp(-A.max())))
    # kind override: the same file as a presentation image is a different (linear) mapping
    r2 = read(p, kind="presentation")
    assert r2.source["kind"] == "presentation"
    stored = np.asarray(counts(A, n0), dtype=np.float64)
    np.testing.assert_allclose(r2.image.numpy(), expected_presentation(np.rint(stored)), atol=1e-4)


def test_dicom_rescale_slope_intercept_and_signed(tmp_path):
    # raw counts through a modality transform: counts = 2 * stored - 100
    c = 2 * np.rint(counts(A, 20000) / 2)
    p = make_dicom(tmp_path / "r.dcm", (c + 100) / 2, slope=2, intercept=-100, intent="FOR PROCESSING")
    r = read(p)
    assert r.source["rescale_slope"] == 2 and r.source["rescale_intercept"] == -100
    np.testing.assert_allclose(r.image.numpy(), A, atol=1e-3)
    # signed 16-bit presentation with slope/intercept: linear, so same as the plain encoding
    v = present(A, 15)
    p = make_dicom(tmp_path / "s.dcm", v - 16000, signed=True, slope=0.5, intercept=3.0)
    r = read(p)
    np.testing.assert_allclose(r.image.numpy(), expected_presentation(v), atol=1e-5)
    check_monotone_corr(r.image.numpy(), A)


def test_dicom_spacing_sources(tmp_path):
    v = present(A, 12)
    p = make_dicom(tmp_path / "both.dcm", v, pixel_spacing=(0.12, 0.12), imager_spacing=(0.14, 0.14))
    assert read(p).spacing_mm == pytest.approx(0.12)
    p = make_dicom(tmp_path / "none.dcm", v)
    with pytest.warns(RadiographWarning, match="spacing unknown"):
        r = read_radiograph(p)
    assert r.spacing_mm is None
    assert read(p, spacing_mm=0.2).spacing_mm == 0.2  # the caller's wins
    p = make_dicom(tmp_path / "aniso.dcm", v, pixel_spacing=(0.1, 0.2))
    with pytest.warns(RadiographWarning, match="anisotropic"):
        assert read_radiograph(p).spacing_mm == pytest.approx(0.15)


def test_dicom_rle_lossless(tmp_path):
    v = present(A, 16)
    p = make_dicom(tmp_path / "rle.dcm", v, rle=True, pixel_spacing=(0.1, 0.1))
    r = read_radiograph(p)
    assert "RLE" in r.source["transfer_syntax"]
    np.testing.assert_allclose(r.image.numpy(), expected_presentation(v), atol=1e-5)


def test_dicom_missing_decoder_is_named(tmp_path):
    p = make_dicom(tmp_path / "jls.dcm", present(A, 16), pixel_spacing=(0.1, 0.1))
    ds = pydicom.dcmread(p)
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8" + b"\x00" * 64 + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.save_as(p, enforce_file_format=True)
    with pytest.raises(RadiographError, match="JPEG-LS.*(decoder|plugin)"):
        read_radiograph(p)


# ------------------------------------------------------------------------------------------------
# PNG / TIFF
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 16])
def test_png_round_trip(tmp_path, bits):
    v = present(A, bits)
    p = tmp_path / "a.png"
    Image.fromarray(v.astype(np.uint8 if bits == 8 else np.uint16)).save(p)
    with pytest.warns(RadiographWarning, match="spacing unknown"):
        r = read_radiograph(p)
    assert r.spacing_mm is None and r.source["format"] == "png" and r.source["kind"] == "presentation"
    np.testing.assert_allclose(r.image.numpy(), expected_presentation(v), atol=1e-5)
    check_monotone_corr(r.image.numpy(), A)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RadiographWarning)
        assert read_radiograph(p, spacing_mm=0.1).spacing_mm == 0.1


def test_png_rgb_gray_accepted_colour_rejected(tmp_path):
    v = present(A, 8).astype(np.uint8)
    p = tmp_path / "g.png"
    Image.fromarray(np.stack([v, v, v], -1)).save(p)
    with pytest.warns(RadiographWarning, match="equal colour channels"):
        r = read_radiograph(p, spacing_mm=0.1)
    np.testing.assert_allclose(r.image.numpy(), expected_presentation(v.astype(float)), atol=1e-5)
    rgb = np.stack([v, v // 2, v], -1)
    Image.fromarray(rgb).save(p)
    with pytest.raises(RadiographError, match="colour"):
        read(p)


def test_tiff_uint16_float32_raw(tmp_path):
    v = present(A, 16)
    p = tmp_path / "a.tif"
    tifffile.imwrite(p, v.astype(np.uint16))
    r = read(p, spacing_mm=0.1)
    assert r.source["format"] == "tiff" and r.source["kind"] == "presentation"
    np.testing.assert_allclose(r.image.numpy(), expected_presentation(v), atol=1e-5)
    # float32: attenuation as it is
    tifffile.imwrite(p, A.astype(np.float32), compression="zlib")
    r = read(p)
    assert r.source["kind"] == "attenuation"
    assert torch.equal(r.image, torch.from_numpy(A.astype(np.float32)))
    # uint16 counts read as raw
    tifffile.imwrite(p, counts(A, 30000).astype(np.uint16))
    np.testing.assert_allclose(read(p, kind="raw").image.numpy(), A, atol=1e-3)


def test_write_png_atomic_round_trip(tmp_path):
    p = tmp_path / "out.png"
    p.write_bytes(b"old")
    assert write_png(p, torch.from_numpy(A).float(), bits=16) == p
    assert sorted(os.listdir(tmp_path)) == ["out.png"]  # no temp file left behind
    r = read(p)
    check_monotone_corr(r.image.numpy(), A, min_corr=0.999)
    write_png(p, torch.from_numpy(A)[None, None], window=(0, 2.0))
    im = np.asarray(Image.open(p))
    assert im.dtype == np.uint8 and im.max() == round(A.max() / 2 * 255)
    with pytest.raises(ValueError, match="bits"):
        write_png(p, torch.zeros(4, 4), bits=12)
    with pytest.raises(ValueError, match="image"):
        write_png(p, torch.full((4, 4), float("nan")))
    with pytest.raises(ValueError, match="window"):
        write_png(p, torch.zeros(4, 4), window=(1, 0))
    assert sorted(os.listdir(tmp_path)) == ["out.png"]


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------


def _valid_files(tmp_path):
    d = make_dicom(tmp_path / "v.dcm", present(A, 16), pixel_spacing=(0.1, 0.1))
    png = tmp_path / "v.png"
    Image.fromarray(present(A, 16).astype(np.uint16)).save(png)
    tif = tmp_path / "v.tif"
    tifffile.imwrite(tif, present(A, 16).astype(np.uint16))
    return d, png, tif


@pytest.mark.parametrize("frac", [0.05, 0.5, 0.95])
def test_truncated_files(tmp_path, frac):
    for f in _valid_files(tmp_path):
        data = f.read_bytes()
        f.write_bytes(data[: int(len(data) * frac)])
        with pytest.raises(RadiographError, match=str(f.name)):
            read(f, spacing_mm=0.1)


def test_wrong_magic_empty_dir_missing(tmp_path):
    for name, data in [("x.dcm", b"\x00" * 200), ("x.png", b"hello, world\n" * 20), ("x.tif", b"GIF89a" + b"\x00" * 50),
                       ("x.txt", b"DICM" * 40)]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(RadiographError):
            read(tmp_path / name)
    (tmp_path / "e.dcm").write_bytes(b"")
    with pytest.raises(RadiographError, match="empty"):
        read(tmp_path / "e.dcm")
    with pytest.raises(IsADirectoryError):
        read(tmp_path)
    with pytest.raises(FileNotFoundError):
        read(tmp_path / "missing.dcm")
    with pytest.raises(TypeError, match="path"):
        read(123)
    with pytest.raises(ValueError, match="kind"):
        read(tmp_path / "e.dcm", kind="bogus")
    with pytest.raises(ValueError, match="spacing_mm"):
        read(tmp_path / "e.dcm", spacing_mm=-1.0)
    with pytest.raises(ValueError, match="max_pixels"):
        read(tmp_path / "e.dcm", max_pixels=0)


def test_dicom_huge_declared_and_inconsistent(tmp_path):
    small = present(A, 16)
    p = make_dicom(tmp_path / "huge.dcm", small, rows=60000, columns=60000)
    with pytest.raises(RadiographError, match="max_pixels"):
        read(p)
    with pytest.raises(RadiographError, match="shorter"):
        read(p, max_pixels=10**10)  # past the size check: the pixel data is far too short
    p = make_dicom(tmp_path / "short.dcm", small, pixel_bytes=b"\x00" * 100)
    with pytest.raises(RadiographError, match="shorter"):
        read(p)
    p = make_dicom(tmp_path / "zero.dcm", small, rows=0, pixel_bytes=b"")
    with pytest.raises(RadiographError, match="zero-sized"):
        read(p)
    p = make_dicom(tmp_path / "const.dcm", np.full((8, 8), 7))
    with pytest.raises(RadiographError, match="constant"):
        read(p)
    p = make_dicom(tmp_path / "rgb.dcm", small, photometric="RGB")
    with pytest.raises(RadiographError, match="RGB"):
        read(p)
    ds = pydicom.dcmread(make_dicom(tmp_path / "nopix.dcm", small))
    del ds.PixelData
    ds.save_as(tmp_path / "nopix.dcm", enforce_file_format=True)
    with pytest.raises(RadiographError, match="no PixelData"):
        read(tmp_path / "nopix.dcm")


def test_png_tiff_huge_declared_and_nan(tmp_path):
    _, png, tif = _valid_files(tmp_path)
    data = bytearray(png.read_bytes())
    data[16:24] = (60000).to_bytes(4, "big") * 2  # IHDR width, height (CRC left stale on purpose)
    png.write_bytes(bytes(data))
    with pytest.raises(RadiographError, match="max_pixels"):
        read(png)
    big = np.zeros((64, 64), np.uint16)
    tifffile.imwrite(tif, big)
    with pytest.raises(RadiographError, match="max_pixels"):
        read(tif, max_pixels=1000)
    bad = A.astype(np.float32)
    bad[3, 4] = np.nan
    tifffile.imwrite(tif, bad)
    with pytest.raises(RadiographError, match="NaN"):
        read(tif)


# ------------------------------------------------------------------------------------------------
# ROI crops
# ------------------------------------------------------------------------------------------------


def blob(H, W, cx, cy, sigma, amp=1.0):
    y, x = torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5, torch.arange(W, dtype=torch.float64) + 0.5,
                          indexing="ij")
    return amp * torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))


def centroid_xy(img):
    img = img.double()
    H, W = img.shape
    y, x = torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5, torch.arange(W, dtype=torch.float64) + 0.5,
                          indexing="ij")
    return torch.stack([(img * x).sum() / img.sum(), (img * y).sum() / img.sum()])


@pytest.mark.parametrize("angle,spacing,out", [(0.0, 0.1, 0.1), (23.0, 0.08, 0.1), (-35.0, 0.15, 0.1)])
def test_crop_point_mapping_and_dot(angle, spacing, out):
    H, W = 150, 170
    C = (83.3, 71.6)
    roi0 = crop_roi(torch.zeros(H, W), C, size=(48, 64), spacing_mm=spacing, out_spacing_mm=out, angle_deg=angle)
    assert isinstance(roi0, RoiCrop) and roi0.image.shape == (1, 1, 48, 64) and roi0.spacing_mm == out
    pts = torch.tensor([[10.0, 20.0], [83.3, 71.6], [120.25, 30.5]], dtype=torch.float64)
    torch.testing.assert_close(roi0.to_full(roi0.from_full(pts)), pts, rtol=0, atol=1e-9)
    torch.testing.assert_close(roi0.from_full(torch.tensor(C)), torch.tensor([32.0, 24.0]), rtol=0, atol=1e-4)
    # a bright dot at P lands at from_full(P)
    P = (95.7, 60.2)
    img = blob(H, W, *P, sigma=2.0).float()
    roi = crop_roi(img, C, size=(48, 64), spacing_mm=spacing, out_spacing_mm=out, angle_deg=angle)
    expect = roi.from_full(torch.tensor(P, dtype=torch.float64))
    got = centroid_xy(roi.image[0, 0])
    assert torch.linalg.norm(got - expect) < 0.5, (got, expect)


def test_crop_rotation_matches_axis_convention():
    """The proximal end of a finger tilted by angle_deg ends up straight above the centre."""
    angle, H, W = 20.0, 160, 160
    C = torch.tensor([80.0, 80.0], dtype=torch.float64)
    a = math.radians(angle)
    prox = C + 30 * torch.tensor([math.sin(a), -math.cos(a)], dtype=torch.float64)  # (x, y)
    img = blob(H, W, *prox.tolist(), sigma=2.0).float()
    roi = crop_roi(img, C.tolist(), size=96, spacing_mm=0.1, out_spacing_mm=0.1, angle_deg=angle)
    got = centroid_xy(roi.image[0, 0])
    torch.testing.assert_close(got, torch.tensor([48.0, 48.0 - 30.0], dtype=torch.float64), rtol=0, atol=0.3)
    from lsn_fast.physics.layers import axis_from_angle

    dy, dx = axis_from_angle(angle)[0].double().tolist()
    up = roi.to_full(torch.tensor([48.0, 47.0], dtype=torch.float64)) - roi.to_full(torch.tensor([48.0, 48.0]))
    torch.testing.assert_close(up, torch.tensor([dx, dy], dtype=torch.float64), rtol=0, atol=1e-6)


def test_crop_identity_and_paste_back():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(40, 50, generator=g)
    roi = crop_roi(img, (25.0, 20.0), size=(16, 20), spacing_mm=0.1, out_spacing_mm=0.1)
    # unrotated, same spacing, integer-aligned: a copy (up to float32 grid rounding)
    torch.testing.assert_close(roi.image[0, 0], img[12:28, 15:35], rtol=0, atol=1e-5)
    back = roi.paste_back(roi.image[0, 0])
    torch.testing.assert_close(back[12:28, 15:35], img[12:28, 15:35], rtol=0, atol=1e-5)
    back[12:28, 15:35] = 0
    assert float(back.abs().max()) == 0.0  # outside the ROI: 0
    # rotated and rescaled: paste_back inverts the crop inside the ROI (smooth image)
    H, W = 120, 140
    smooth = (blob(H, W, 60, 55, 14) + 0.5 * blob(H, W, 80, 70, 20)).float()
    for spacing, out in [(0.1, 0.1), (0.05, 0.1), (0.15, 0.1)]:
        roi = crop_roi(smooth, (70.0, 60.0), size=64, spacing_mm=spacing, out_spacing_mm=out, angle_deg=17.0)
        stack = torch.stack([roi.image[0, 0], 2 * roi.image[0, 0]])  # leading dims pass through
        back = roi.paste_back(stack)
        assert back.shape == (2, H, W)
        y, x = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
        c = roi.from_full(torch.stack([x, y], -1).double())
        margin = 3.0
        inner = (c[..., 0] > margin) & (c[..., 0] < 64 - margin) & (c[..., 1] > margin) & (c[..., 1] < 64 - margin)
        outer = (c[..., 0] < -2) | (c[..., 0] > 66) | (c[..., 1] < -2) | (c[..., 1] > 66)
        assert inner.sum() > 100
        err = (back[0] - smooth)[inner].abs().max()
        assert err < 0.02, (spacing, err)
        torch.testing.assert_close(back[1], 2 * back[0])
        assert float(back[0][outer].abs().max()) == 0.0


def test_crop_validation():
    img = torch.zeros(32, 32)
    with pytest.raises(ValueError, match="spacing_mm"):
        crop_roi(img, (16, 16))
    with pytest.raises(ValueError, match="center_xy"):
        crop_roi(img, (40, 16), spacing_mm=0.1)
    with pytest.raises(ValueError, match="size"):
        crop_roi(img, (16, 16), spacing_mm=0.1, size=0)
    with pytest.raises(TypeError, match="size"):
        crop_roi(img, (16, 16), spacing_mm=0.1, size=2.5)
    with pytest.raises(TypeError, match="image"):
        crop_roi("img", (16, 16), spacing_mm=0.1)
    with pytest.raises(ValueError, match="image"):
        crop_roi(torch.full((8, 8), float("nan")), (4, 4), spacing_mm=0.1)
    with pytest.raises(ValueError, match="out_spacing_mm"):
        crop_roi(img, (16, 16), spacing_mm=0.1, out_spacing_mm=0)
    with pytest.raises(ValueError, match="angle_deg"):
        crop_roi(img, (16, 16), spacing_mm=0.1, angle_deg=float("inf"))
    roi = crop_roi(img, (16, 16), spacing_mm=0.1, size=8)
    with pytest.raises(ValueError, match="crop"):
        roi.paste_back(torch.zeros(9, 8))
    # a Radiograph carries its spacing
    r = Radiograph(image=torch.rand(32, 32), spacing_mm=0.2, source={})
    roi = crop_roi(r, (16, 16), size=8)
    assert roi.full_spacing_mm == 0.2 and roi.scale == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------------
# fuzz: mutated valid files -> a valid Radiograph or RadiographError, nothing else
# ------------------------------------------------------------------------------------------------


def _bases():
    small = present(attenuation_image(12, 14), 12)
    out = {}
    for name, kw in [("plain.dcm", {}), ("rle.dcm", {"rle": True}), ("mono1.dcm", {"photometric": "MONOCHROME1"})]:
        buf = _io.BytesIO()
        make_dicom(buf, small, pixel_spacing=(0.1, 0.1), **kw)
        out[name] = buf.getvalue()
    for name, arr in [("p8.png", small.astype(np.uint8)), ("p16.png", small.astype(np.uint16))]:
        buf = _io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        out[name] = buf.getvalue()
    for name, arr, comp in [("t16.tif", small.astype(np.uint16), None), ("tf.tif", small.astype(np.float32), "zlib")]:
        buf = _io.BytesIO()
        tifffile.imwrite(buf, arr, compression=comp)
        out[name] = buf.getvalue()
    return out


BASES = _bases()
NAMES = sorted(BASES)


@st.composite
def mutated_file(draw):
    name = draw(st.sampled_from(NAMES))
    data = bytearray(BASES[name])
    for _ in range(draw(st.integers(1, 4))):
        n = len(data)
        if n == 0:
            break
        # half the mutations hit the header region, where parsers make their decisions
        pos = draw(st.one_of(st.integers(0, min(n - 1, 400)), st.integers(0, n - 1)))
        op = draw(st.sampled_from(["flip", "truncate", "splice", "set32", "delete"]))
        if op == "flip":
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[pos:]
        elif op == "splice":
            other = BASES[draw(st.sampled_from(NAMES))]
            a = draw(st.integers(0, len(other) - 1))
            data[pos:pos] = other[a : a + draw(st.integers(1, 64))]
        elif op == "set32":
            data[pos : pos + 4] = draw(st.sampled_from(
                [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x60\xea\x00\x00", b"\x00\x00\xea\x60", b"\x01\x00\x00\x00"]))
        else:
            del data[pos : pos + draw(st.integers(1, 16))]
    ext = draw(st.sampled_from([os.path.splitext(name)[1], ".dcm", ".bin"]))
    return bytes(data), ext


@settings(max_examples=180, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated_file())
def test_fuzz_mutated_files(tmp_path_factory, case):
    data, ext = case
    d = tmp_path_factory.getbasetemp() / "fuzz"
    d.mkdir(exist_ok=True)
    p = d / f"f{ext}"
    p.write_bytes(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = read_radiograph(p, max_pixels=1_000_000)
    except RadiographError as e:
        assert str(p) in str(e) and "\n" not in str(e)
        return
    assert isinstance(r, Radiograph)
    assert r.image.dtype == torch.float32 and r.image.ndim == 2 and r.image.numel() > 0
    assert bool(torch.isfinite(r.image).all())
    assert r.spacing_mm is None or (math.isfinite(r.spacing_mm) and r.spacing_mm > 0)
