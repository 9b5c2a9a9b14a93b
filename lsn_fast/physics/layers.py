"""The data model: a stack of three attenuation layers of one finger joint.

All layers are line integrals of the linear attenuation coefficient (dimensionless, ``∫ μ dl``):

* ``soft``  (B,H,W): the finger with every bone voxel filled with soft tissue,
* ``upper`` (B,H,W): excess attenuation (μ_bone − μ_soft) of the proximal bone, >= 0,
* ``lower`` (B,H,W): the same for the distal bone, >= 0,

so that the attenuation image is ``A = soft + upper + lower`` and the radiograph is
``I = I0 · exp(−A)`` (DESIGN.md §2). Moving a bone layer never leaves a hole because the bone
layers only hold the excess over soft tissue.

Geometry conventions (used everywhere in lsn_fast):

* pixel ``(i, j)`` covers ``[i, i+1) × [j, j+1)`` in (row, column) *edge coordinates*; y grows
  downwards, x to the right;
* ``axis`` is a unit vector ``(dy, dx)`` per sample pointing from the lower (distal) bone towards
  the upper (proximal) bone. A vertical finger with the proximal bone on top has
  ``axis = (-1, 0)``. A positive shift moves the upper bone along ``axis`` and opens the joint.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import torch

from lsn_fast.physics.axis import angle_from_axis, axis_from_angle, normalize_axis
from lsn_fast.physics.moves import check_bone, check_moves, move_bones
from lsn_fast.utils.files import apply_umask
from lsn_fast.utils.validation import check_positive_float, check_tensor, per_sample

_LAYER_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


@dataclass(init=False)
class LayerStack:
    """Soft-tissue, upper-bone and lower-bone attenuation layers of B joints.

    Args:
        soft, upper, lower: tensors (B,H,W) or (H,W), float32/float16/bfloat16/float64, same
            shape, dtype and device, finite and >= 0 (dimensionless line integrals).
        spacing_mm: pixel spacing in mm (isotropic), > 0. CR/DR hand radiographs: 0.1–0.175 mm.
        axis: joint axis per sample, unit ``(dy, dx)`` from the lower towards the upper bone;
            an angle in degrees, a (2,) or (B,2) tensor, or None (estimated from the bone layers
            when needed, see :func:`lsn_fast.estimate_axis`).
        validate: check finiteness/non-negativity (a device sync); internal callers that built
            the layers themselves pass False.

    Layers are always stored batched, (B,H,W); a 2-D input becomes B = 1.
    """

    soft: torch.Tensor
    upper: torch.Tensor
    lower: torch.Tensor
    spacing_mm: float
    axis: torch.Tensor | None

    def __init__(self, soft, upper, lower, spacing_mm: float = 0.1, axis=None, *, validate: bool = True):
        layers = {}
        for name, t in (("soft", soft), ("upper", upper), ("lower", lower)):
            check_tensor(t, name, ndim=(2, 3), dtypes=_LAYER_DTYPES, finite=validate, nonnegative=validate)
            layers[name] = t.unsqueeze(0) if t.ndim == 2 else t
        s, u, l = layers["soft"], layers["upper"], layers["lower"]
        for name, t in (("upper", u), ("lower", l)):
            if t.shape != s.shape:
                raise ValueError(f"{name}: shape {tuple(t.shape)} does not match soft {tuple(s.shape)}")
            if t.dtype != s.dtype:
                raise TypeError(f"{name}: dtype {t.dtype} does not match soft {s.dtype}")
            if t.device != s.device:
                raise ValueError(f"{name}: on device {t.device}, but soft is on {s.device}")
        self.soft, self.upper, self.lower = s, u, l
        self.spacing_mm = check_positive_float(spacing_mm, "spacing_mm")
        self.axis = normalize_axis(axis, s.shape[0], s.device)

    _geometry_cache = None  # (axis, jsw0) once measured (see geometry()); not a dataclass field

    # ------------------------------------------------------------------ basics
    @property
    def batch_size(self) -> int:
        return self.soft.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(B, H, W)."""
        return tuple(self.soft.shape)

    @property
    def dtype(self) -> torch.dtype:
        return self.soft.dtype

    @property
    def device(self) -> torch.device:
        return self.soft.device

    def __len__(self) -> int:
        return self.batch_size

    def __repr__(self) -> str:
        B, H, W = self.shape
        ax = "estimated" if self.axis is None else "given"
        return f"LayerStack(B={B}, H={H}, W={W}, spacing_mm={self.spacing_mm}, dtype={self.dtype}, device={self.device}, axis={ax})"

    def _replace(self, soft=None, upper=None, lower=None, axis="keep") -> "LayerStack":
        return LayerStack(
            self.soft if soft is None else soft,
            self.upper if upper is None else upper,
            self.lower if lower is None else lower,
            self.spacing_mm,
            self.axis if isinstance(axis, str) else axis,
            validate=False,
        )

    def __getitem__(self, idx) -> "LayerStack":
        """Select samples. An int gives a stack of B = 1 (layers stay (B,H,W))."""
        if isinstance(idx, int):
            if not -self.batch_size <= idx < self.batch_size:
                raise IndexError(f"index {idx} is out of range for a stack of {self.batch_size}")
            idx = slice(idx, idx + 1 if idx != -1 else None)
        elif isinstance(idx, torch.Tensor) and idx.dtype in (torch.int64, torch.int32) and idx.numel():
            if bool(((idx < -self.batch_size) | (idx >= self.batch_size)).any()):
                raise IndexError(f"index: values must lie in [-{self.batch_size}, {self.batch_size}), got [{int(idx.min())}, {int(idx.max())}]")
        sel = lambda t: t[idx]  # noqa: E731
        out = LayerStack.__new__(LayerStack)
        out.soft, out.upper, out.lower = sel(self.soft), sel(self.upper), sel(self.lower)
        if out.soft.ndim == 2:
            out.soft, out.upper, out.lower = (t.unsqueeze(0) for t in (out.soft, out.upper, out.lower))
        out.spacing_mm = self.spacing_mm
        out.axis = None if self.axis is None else sel(self.axis).reshape(-1, 2)
        return out

    def __iter__(self) -> Iterator["LayerStack"]:
        for i in range(self.batch_size):
            yield self[i]

    def to(self, *args, **kwargs) -> "LayerStack":
        """Like ``Tensor.to``: device and/or dtype for the layers (the axis stays float32).

        A geometry already measured on this stack (axis and JSW, cached by
        :func:`lsn_fast.synthesize`, :class:`lsn_fast.JSWStream` and :meth:`with_residual`) goes
        along, moved to the new device and kept in float32: it describes the anatomy, not the
        storage, so a carried stack converted to bf16 still labels by its plain layers."""
        s, u, l = (t.to(*args, **kwargs) for t in (self.soft, self.upper, self.lower))
        if s.dtype not in _LAYER_DTYPES:
            raise TypeError(f"dtype: layers must be floating point, got {s.dtype}")
        axis = None if self.axis is None else self.axis.to(device=s.device)
        out = LayerStack(s, u, l, self.spacing_mm, axis, validate=False)
        cache = self._geometry_cache
        if cache is not None:
            out._geometry_cache = tuple(t.to(device=s.device) for t in cache)
        return out

    def contiguous(self) -> "LayerStack":
        return self._replace(*(t.contiguous() for t in (self.soft, self.upper, self.lower)))

    def clone(self) -> "LayerStack":
        ax = None if self.axis is None else self.axis.clone()
        return self._replace(*(t.clone() for t in (self.soft, self.upper, self.lower)), axis=ax)

    @staticmethod
    def cat(stacks: "list[LayerStack]") -> "LayerStack":
        """Concatenate stacks along the batch (same H, W, spacing, dtype and device)."""
        stacks = list(stacks)
        if not stacks:
            raise ValueError("stacks: need at least one LayerStack")
        for i, s in enumerate(stacks):
            if not isinstance(s, LayerStack):
                raise TypeError(f"stacks: item {i} is a {type(s).__name__}, not a LayerStack")
            if s.shape[1:] != stacks[0].shape[1:] or s.dtype != stacks[0].dtype or s.device != stacks[0].device:
                raise ValueError(f"stacks: item {i} is {tuple(s.shape[1:])} {s.dtype} on {s.device}, item 0 "
                                 f"{tuple(stacks[0].shape[1:])} {stacks[0].dtype} on {stacks[0].device}; all must match")
        sp = stacks[0].spacing_mm
        if any(abs(s.spacing_mm - sp) > 1e-12 for s in stacks):
            raise ValueError("stacks: all stacks must have the same spacing_mm")
        has_axis = [s.axis is not None for s in stacks]
        if any(has_axis) and not all(has_axis):
            raise ValueError("stacks: either all stacks or none must carry an axis")
        axis = torch.cat([s.axis for s in stacks]) if all(has_axis) else None
        return LayerStack(
            torch.cat([s.soft for s in stacks]),
            torch.cat([s.upper for s in stacks]),
            torch.cat([s.lower for s in stacks]),
            sp,
            axis,
            validate=False,
        )

    # ------------------------------------------------------------------ physics
    def attenuation(self) -> torch.Tensor:
        """Total attenuation ``A = soft + upper + lower``, (B,H,W), in the layers' dtype."""
        return self.soft + self.upper + self.lower

    def fit_blur(self, image, sigmas=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.7, 2.0, 2.5)) -> torch.Tensor:
        """Per image, the Gaussian blur σ (px) from ``sigmas`` under which these layers best
        explain ``image``: the σ minimizing ‖HP(image) − HP(G_σ * attenuation())‖², with HP the
        image minus its σ = 3 px blur (so scatter and other smooth offsets do not pull the fit).
        The detector blurs counts, not attenuation; at a finger's contrasts the attenuation-domain
        Gaussian is a close stand-in, and the fit only has to say how wide the edges' skirts are.

        Args:
            image: (B,H,W) or (B,1,H,W) attenuation, the image the layers were separated from.
            sigmas: candidate σ in px, each >= 0.
        Returns:
            (B,) float32 px, on the layers' device.
        """
        from lsn_fast.physics.reference import gaussian_blur

        img = self._image_like(image)
        cand = [float(v) for v in sigmas]
        if not cand or any(not math.isfinite(v) or v < 0 for v in cand):
            raise ValueError(f"sigmas: expected finite values >= 0, got {sigmas!r}")
        B = img.shape[0]
        hp = lambda t: t - gaussian_blur(t, torch.full((B,), 3.0, device=t.device))  # noqa: E731
        target = hp(img)
        total = self.attenuation().float()
        errs = torch.stack([((hp(gaussian_blur(total, torch.full((B,), v, device=total.device))) - target) ** 2)
                            .flatten(1).mean(1) for v in cand])
        return torch.tensor(cand, device=total.device)[errs.argmin(0)]

    def _image_like(self, image) -> torch.Tensor:
        """``image`` as (B,H,W) float32 on the layers' device, checked against the stack."""
        if not isinstance(image, torch.Tensor):
            raise TypeError(f"image: expected a tensor, got {type(image).__name__}")
        img = image[:, 0] if image.ndim == 4 and image.shape[1] == 1 else image
        if img.ndim == 2:
            img = img.unsqueeze(0)
        if tuple(img.shape) != self.shape:
            raise ValueError(f"image: shape {tuple(image.shape)} does not match the stack's (B,H,W) = {self.shape}")
        if not bool(torch.isfinite(img).all()):
            raise ValueError("image: must be finite")
        return img.to(device=self.device, dtype=torch.float32)

    def with_residual(self, image, *, air: float = 1e-4, blur_sigma_px=None) -> "LayerStack":
        """The layers plus their share of what they do not explain in ``image``.

        A separation (:func:`lsn_fast.separate`) returns denoised layers: the detector noise and
        fine texture the network could not attribute are left in the residual
        ``R = image − attenuation()``. This splits ``R`` between the layers by their fractions
        ``layer / attenuation()`` (pixels with attenuation below ``air``, where there is no
        tissue to share it, give it all to the soft layer), so the result sums to ``image``
        exactly and a moved bone takes its own texture and noise along. Re-synthesizing from it
        *without* a detector (``compose(stack.with_residual(y).shifted(s))``) keeps the source
        image's noise, blur and texture; rendering the plain layers through a
        :class:`Detector` gives new noise on too-smooth anatomy instead.

        Args:
            image: (B,H,W) or (B,1,H,W) attenuation, the image the layers were separated from.
            air: attenuation (dimensionless) below which a pixel counts as air, > 0.
            blur_sigma_px: None, a float or (B,) px (e.g. :meth:`fit_blur`): blur each layer by
                this Gaussian first and split the rest by the blurred layers' fractions. Without
                it, the blur skirt just outside a sharp bone edge (in the gap, where the bone's
                fraction is 0) goes to the soft layer and stays behind when the bone moves: a
                moved bone then lacks its outer skirt, and whole-pixel families read about
                0.015 mm wider than labelled when the joint is closed
                (lab/2026-12-03-five-percent-jsw-layer-aux/). With it, each bone
                carries its own blurred edge.
        Returns:
            A LayerStack (same dtype and spacing) with the axis resolved on *these* layers
            (:meth:`resolved_axis`; the noisy ones would give a slightly different estimate), so
            its moves go where the plain stack's would. Its layers carry noise, so they can be
            slightly negative; it is built without validation. Use the plain stack to measure
            (``shift_for_jsw``, :func:`lsn_fast.measure_jsw`) and this one to compose. The plain
            layers' axis and JSW are also cached on the result, so :func:`lsn_fast.synthesize`
            and :class:`lsn_fast.JSWStream` fed with it label by the plain layers' geometry
            (noise in the bone layers would move a measured JSW by ~0.01 mm). ``.to()`` keeps
            that cache; a stack made from it otherwise (indexing, moves) measures its own layers.
        """
        img = self._image_like(image)
        air = check_positive_float(air, "air")
        base = [self.soft.float(), self.upper.float(), self.lower.float()]
        if blur_sigma_px is not None:
            from lsn_fast.physics.reference import gaussian_blur

            sig = torch.as_tensor(blur_sigma_px, dtype=torch.float32, device=self.device).reshape(-1)
            if sig.numel() == 1:
                sig = sig.expand(self.shape[0])
            if sig.numel() != self.shape[0] or not bool((torch.isfinite(sig) & (sig >= 0) & (sig <= 50)).all()):
                raise ValueError(f"blur_sigma_px: expected a float or ({self.shape[0]},) values in [0, 50] px")
            base = [gaussian_blur(t, sig.contiguous()) for t in base]
        total = base[0] + base[1] + base[2]
        resid = img - total
        is_air = total < air
        share = resid / total.clamp_min(air)
        soft = base[0] + torch.where(is_air, resid, base[0] * share)
        upper = base[1] + torch.where(is_air, torch.zeros_like(resid), base[1] * share)
        lower = base[2] + torch.where(is_air, torch.zeros_like(resid), base[2] * share)
        geometry = self.geometry()  # (axis, jsw0) of the plain layers, cached on self too
        out = self._replace(*(t.to(self.dtype) for t in (soft, upper, lower)), axis=geometry[0])
        out._geometry_cache = geometry
        return out

    def geometry(self, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
        """``(axis (B,2), jsw0 (B,) mm)`` float32 on the stack's device: the resolved axis and the
        JSW measured from the bone layers, computed in chunks of ``chunk`` once and cached on the
        object. The one place a bank's geometry is measured (:func:`lsn_fast.synthesize`,
        :class:`lsn_fast.JSWStream`, :meth:`with_residual` and the exporters share it)."""
        if self._geometry_cache is None:
            from lsn_fast.physics.jsw import measure_jsw

            axes, jsws = [], []
            for b0 in range(0, self.batch_size, chunk):
                sub = self[b0:b0 + chunk]
                ax = sub.resolved_axis()
                axes.append(ax)
                jsws.append(measure_jsw(LayerStack(sub.soft, sub.upper, sub.lower, sub.spacing_mm, ax, validate=False))
                            .to(torch.float32))
            self._geometry_cache = (torch.cat(axes), torch.cat(jsws))
        return self._geometry_cache

    def set_geometry(self, axis: torch.Tensor, jsw0_mm: torch.Tensor) -> "LayerStack":
        """Give the stack a known geometry (axis (B,2), jsw0 (B,) mm) instead of measuring it, e.g.
        for a bank tiled from measured stacks. Returns ``self``."""
        B = self.batch_size
        if tuple(axis.shape) != (B, 2) or tuple(jsw0_mm.shape) != (B,):
            raise ValueError(f"axis, jsw0_mm: expected shapes ({B}, 2) and ({B},), got {tuple(axis.shape)}, {tuple(jsw0_mm.shape)}")
        self._geometry_cache = (axis.to(device=self.device, dtype=torch.float32), jsw0_mm.to(device=self.device, dtype=torch.float32))
        return self

    def resolved_axis(self) -> torch.Tensor:
        """The axis (B,2) float32: the given one, or estimated from the bone layers."""
        if self.axis is not None:
            return self.axis
        from lsn_fast.physics.jsw import estimate_axis

        return estimate_axis(self)

    def shifted(self, shift_px, *, bone: str = "upper", interp: str = "linear", moves: str = "subpixel") -> "LayerStack":
        """Move a bone layer by ``shift_px`` pixels along the joint axis (the vocabulary of
        :mod:`lsn_fast.physics.moves`, shared with :func:`lsn_fast.synthesize`).

        Args:
            shift_px: float or (B,) tensor, px. Positive opens the joint (the upper bone moves
                along ``axis``, the lower bone against it).
            bone: ``"upper"``, ``"lower"`` or ``"both"``: each bone moves half the shift, so the
                gap's centre stays where it was. Crops centred on the joint (what a joint
                detector gives, and the phantoms) keep the gap at the centre whatever the JSW;
                a one-bone move shifts the gap by half the change, a cue a model trained on
                real crops reads as a different JSW.
            interp: ``"linear"`` or ``"cubic"`` (Keys, a = −0.5). Borders are edge-clamped.
            moves: ``"subpixel"`` (the exact shift) or ``"integer"``: the move ``shift·axis``
                rounded per component to whole pixels, an exact copy of the layer (the JSW then
                changes by the rounded move; :func:`lsn_fast.whole_pixel_moves` gives the move
                that reaches a target JSW and that JSW).
        Returns:
            A new LayerStack (same dtype; interpolation is done in float32). The axis used is
            stored on the result so later measurements use the same one.
        """
        shift = per_sample(shift_px, "shift_px", self.batch_size, device=self.device)
        check_bone(bone)
        moves, interp = check_moves(moves, interp)
        axis = self.resolved_axis()
        whole = torch.round(shift[:, None] * axis) if moves == "integer" else None
        up, low = move_bones(self.upper, self.lower, shift, axis, bone=bone, interp=interp, whole=whole)
        return self._replace(upper=up, lower=low, axis=axis)

    def rotated(self, angle_deg, *, flip=False) -> "LayerStack":
        """Rigidly re-pose the whole joint: an optional left–right flip, then a rotation about
        the image centre. All three layers move together, so the JSW (a physical gap) is kept
        up to interpolation; the axis moves with them.

        Meant for synthesis: re-posing the *layers* before :func:`lsn_fast.compose` gives images
        whose noise and blur are those of the detector, where rotating a finished radiograph
        resamples (smooths) its noise.

        Args:
            angle_deg: float or (B,) tensor, degrees. Positive turns the joint clockwise on
                screen, i.e. adds to the tilt of :func:`axis_from_angle`.
            flip: bool or (B,) bool tensor: mirror left–right first (the tilt changes sign).
        Returns:
            A new LayerStack (bilinear, border padding, computed in float32, same dtype), with
            the transformed axis stored on it. Values are not clamped (see :meth:`stretched`).
        """
        from lsn_fast.physics.reference import rotate_about_centre

        B = self.batch_size
        dev = self.device
        ang = per_sample(angle_deg, "angle_deg", B, device=dev)
        if not bool(torch.isfinite(ang).all()):
            raise ValueError("angle_deg: contains NaN or Inf")
        if isinstance(flip, bool):
            fl = torch.full((B,), flip, device=dev)
        else:
            if not isinstance(flip, (torch.Tensor, list, tuple)):
                raise TypeError(f"flip: expected a bool or a ({B},) bool tensor, got {type(flip).__name__}")
            fl = torch.as_tensor(flip, device=dev)
            if fl.dtype != torch.bool or fl.ndim != 1 or fl.shape[0] not in (1, B):
                raise ValueError(f"flip: expected a bool or a ({B},) bool tensor, got {fl.dtype} {tuple(fl.shape)}")
            fl = fl.expand(B)
        L = torch.stack([self.soft, self.upper, self.lower], 1).to(torch.float32)
        L = rotate_about_centre(L, -ang, fl)  # the helper turns counter-clockwise for positive angles
        # no clamp: bilinear weights are >= 0, so plain layers stay >= 0, and carried layers
        # (with_residual) keep their negative noise
        L = L.to(self.dtype)
        tilt = angle_from_axis(self.resolved_axis().to(dev))
        axis = axis_from_angle(torch.where(fl, -tilt, tilt) + ang).to(dev)
        return LayerStack(L[:, 0], L[:, 1], L[:, 2], self.spacing_mm, axis, validate=False)

    def stretched(self, scale) -> "LayerStack":
        """Scale the joint across its axis: bone and finger widths × ``scale``, about the image
        centre, with distances along the axis (and so the JSW) unchanged up to interpolation.

        With :meth:`scaled`, a way to make anatomies the source images do not contain (wider or
        narrower bones) while the JSW label stays known.

        Args:
            scale: float or (B,) tensor, > 0 (e.g. 0.9–1.1).
        Returns:
            A new LayerStack (bilinear, border padding, computed in float32, same dtype) with the
            resolved axis stored on it. Values are not clamped: carried layers
            (:meth:`with_residual`) may hold negative noise.
        """
        from lsn_fast.physics.reference import stretch_across_axis

        s = per_sample(scale, "scale", self.batch_size, device=self.device, min_value=0.0, min_inclusive=False)
        if not bool(torch.isfinite(s).all()):
            raise ValueError("scale: contains NaN or Inf")
        axis = self.resolved_axis().to(self.device)
        L = torch.stack([self.soft, self.upper, self.lower], 1).to(torch.float32)
        L = stretch_across_axis(L, axis, s).to(self.dtype)
        return LayerStack(L[:, 0], L[:, 1], L[:, 2], self.spacing_mm, axis, validate=False)

    def scaled(self, soft=1.0, upper=1.0, lower=1.0) -> "LayerStack":
        """Multiply each layer by its own factor: denser or lighter bones (e.g. periarticular
        osteopenia: ``upper`` and ``lower`` < 1), thicker or thinner soft tissue. The geometry
        and the axis are kept, so is the JSW (:func:`lsn_fast.measure_jsw` normalizes each bone's
        profile).

        Args:
            soft, upper, lower: float or (B,) tensor, >= 0, dimensionless factors.
        Returns:
            A new LayerStack (same dtype, axis kept).
        """
        f = [per_sample(v, n, self.batch_size, device=self.device, min_value=0.0)
             for v, n in ((soft, "soft"), (upper, "upper"), (lower, "lower"))]
        for t, n in zip(f, ("soft", "upper", "lower")):
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{n}: contains NaN or Inf")
        return self._replace(*((layer.float() * t[:, None, None]).to(self.dtype)
                               for layer, t in zip((self.soft, self.upper, self.lower), f)))

    def with_jsw(self, jsw_mm, *, bone: str = "upper", interp: str = "linear") -> "LayerStack":
        """Move a bone along the axis so that :func:`lsn_fast.measure_jsw` gives ``jsw_mm``.

        Args:
            jsw_mm: float or (B,) tensor, mm, >= 0 (bones may not interpenetrate).
        """
        target = per_sample(jsw_mm, "jsw_mm", self.batch_size, device=self.device, min_value=0.0)
        shift = self.shift_for_jsw(target)
        return self.shifted(shift, bone=bone, interp=interp)

    def shift_for_jsw(self, jsw_mm) -> torch.Tensor:
        """Shift in px, (B,), that brings the measured JSW to ``jsw_mm`` (>= 0)."""
        target = per_sample(jsw_mm, "jsw_mm", self.batch_size, device=self.device, min_value=0.0)
        from lsn_fast.physics.jsw import measure_jsw

        current = measure_jsw(self)
        if bool(torch.isnan(current).any()):
            bad = torch.nonzero(torch.isnan(current)).flatten().tolist()
            raise ValueError(f"jsw_mm: the JSW of samples {bad[:8]} cannot be measured (no line crosses both bones)")
        return (target - current.to(target)) / self.spacing_mm

    # ------------------------------------------------------------------ I/O
    def state_dict(self) -> dict[str, torch.Tensor]:
        d = {"soft": self.soft, "upper": self.upper, "lower": self.lower,
             "spacing_mm": torch.tensor([self.spacing_mm], dtype=torch.float64)}
        if self.axis is not None:
            d["axis"] = self.axis
        return d

    def save(self, path: str | os.PathLike, *, flagged=None, reasons=None) -> None:
        """Save to ``.safetensors`` (default) or ``.npz``, chosen by the file extension.

        Args:
            flagged: optional (B,) bool, the stacks a quality check flagged (e.g.
                ``SeparationQuality.flagged`` of :func:`lsn_fast.separate`); stored with the
                layers and read back by :meth:`read_flags`. :class:`lsn_fast.JSWStream` and
                ``lsn-fast synth`` refuse flagged stacks of a file unless told otherwise.
            reasons: optional list of B lists of strings (``SeparationQuality.reasons``).
        """
        import json

        path = os.fspath(path)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        extra = {}
        if flagged is not None:
            fl = torch.as_tensor(flagged).reshape(-1)
            if fl.dtype != torch.bool or fl.numel() != self.batch_size:
                raise ValueError(f"flagged: expected a ({self.batch_size},) bool tensor, got {fl.dtype} of {fl.numel()}")
            extra["flagged"] = fl.to(torch.uint8).cpu()
        if reasons is not None:
            if len(reasons) != self.batch_size:
                raise ValueError(f"reasons: expected {self.batch_size} entries, got {len(reasons)}")
            reasons = json.dumps([[str(x) for x in (r if isinstance(r, (list, tuple)) else [r] if r else [])]
                                  for r in reasons])
        if path.endswith(".npz"):
            import numpy as np

            arrays = {k: (v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy()) for k, v in tensors.items()}
            arrays["__dtype__"] = np.array(str(self.dtype).replace("torch.", ""))
            if "flagged" in extra:
                arrays["__flagged__"] = extra["flagged"].numpy()
            if reasons is not None:
                arrays["__reasons__"] = np.array(reasons)
            np.savez(path, **arrays)
        else:
            from safetensors.torch import save_file

            meta = {"format": "lsn_fast.LayerStack", "version": "1"}
            if reasons is not None:
                meta["reasons"] = reasons
            save_file({**tensors, **extra}, path, metadata=meta)
            apply_umask(path)  # safetensors writes 0600

    @staticmethod
    def read_flags(path: str | os.PathLike) -> "LayerFlags":
        """The quality flags :meth:`save` stored with a stack file: ``LayerFlags(flagged (B,) bool
        or None, reasons: list of B lists of strings, empty lists where none were stored)``. To
        get the stack too, read the file once with ``load(path, return_flags=True)``."""
        return _stored_flags(*_read_stack_file(path))

    @classmethod
    def load(cls, path: str | os.PathLike, device=None, *, return_flags: bool = False):
        """Load a stack written by :meth:`save` (safetensors or npz); validates the contents.

        With ``return_flags=True`` returns ``(stack, LayerFlags)`` (see :meth:`read_flags`) from
        the same read of the file."""
        d, reasons = _read_stack_file(path)
        path = os.fspath(path)
        missing = [k for k in ("soft", "upper", "lower", "spacing_mm") if k not in d]
        if missing:
            raise ValueError(f"path: {path} lacks {missing}; not a LayerStack file")
        if d["spacing_mm"].numel() != 1:
            raise ValueError(f"path: {path} holds spacing_mm of shape {tuple(d['spacing_mm'].shape)}, expected one value")
        st = cls(d["soft"], d["upper"], d["lower"], float(d["spacing_mm"].reshape(-1)[0]), d.get("axis"))
        st = st if device is None else st.to(device)
        return (st, _stored_flags(d, reasons)) if return_flags else st


class LayerFlags(NamedTuple):
    """Quality flags stored with a stack file (:meth:`LayerStack.save`): ``flagged`` (B,) bool or
    None, ``reasons`` a list of B lists of strings."""

    flagged: torch.Tensor | None
    reasons: list


def _read_stack_file(path) -> tuple[dict, str | None]:
    """Every tensor of a file written by :meth:`LayerStack.save` (the npz ``__flagged__`` as
    ``flagged``; layers in their stored dtype) and its stored reasons (JSON text or None)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no such file: {path}")
    try:
        if path.endswith(".npz"):
            import numpy as np

            with np.load(path, allow_pickle=False) as z:
                dtype = getattr(torch, str(z["__dtype__"])) if "__dtype__" in z else None
                d = {k: torch.from_numpy(z[k].copy()) for k in z.files if not k.startswith("__")}
                if "__flagged__" in z:
                    d["flagged"] = torch.from_numpy(z["__flagged__"].copy())
                reasons = str(z["__reasons__"]) if "__reasons__" in z else None
            if dtype is not None:
                for k in ("soft", "upper", "lower"):
                    if k in d:
                        d[k] = d[k].to(dtype)
        else:
            from safetensors import safe_open

            with safe_open(path, framework="pt") as f:
                d = {k: f.get_tensor(k) for k in f.keys()}
                reasons = (f.metadata() or {}).get("reasons")
    except Exception as e:  # corrupt or foreign file
        raise ValueError(f"path: {path} is not a readable LayerStack file ({type(e).__name__}: {e})") from None
    return d, reasons


def _stored_flags(d: dict, reasons: str | None) -> LayerFlags:
    import json

    fl = d.get("flagged")
    try:
        rs = json.loads(reasons) if reasons is not None else None
    except ValueError as e:
        raise ValueError(f"path: the stored quality reasons are not readable JSON ({e})") from None
    if fl is not None:
        fl = fl.reshape(-1).to(torch.bool)
    n = fl.numel() if fl is not None else len(rs) if isinstance(rs, list) else 0
    if not (isinstance(rs, list) and len(rs) == n):
        rs = [[] for _ in range(n)]
    return LayerFlags(fl, rs)
