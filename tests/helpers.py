"""Shared test fixtures-as-functions (importable from tests as `helpers`)."""

import torch


def rect_stack(B=2, H=48, W=40, spacing=0.1, gap_px=8.0, dtype=torch.float32, seed=0):
    """A simple stack: random soft tissue, rectangular bones with exact area coverage at the
    margins (upper bone ends at y = H/2 - gap/2, lower starts at H/2 + gap/2; edge coords)."""
    g = torch.Generator().manual_seed(seed)
    soft = 0.3 + 0.1 * torch.rand(B, H, W, generator=g)
    y = torch.arange(H, dtype=torch.float64)
    end_u = H / 2 - gap_px / 2
    start_l = H / 2 + gap_px / 2
    cov_u = (end_u - y).clamp(0, 1)  # fraction of pixel [y, y+1) above end_u
    cov_l = (y + 1 - start_l).clamp(0, 1)
    cols = torch.zeros(W, dtype=torch.float64)
    cols[W // 5 : W - W // 5] = 1.0
    upper = (0.5 * cov_u[:, None] * cols[None, :]).expand(B, H, W).to(dtype).clone()
    lower = (0.4 * cov_l[:, None] * cols[None, :]).expand(B, H, W).to(dtype).clone()
    from lsn_fast import LayerStack

    return LayerStack(soft.to(dtype), upper, lower, spacing, axis=(-1.0, 0.0))


# ------------------------------------------------------------------ backend-vs-reference comparison
# Shared by the cpu / triton backend tests (docs/kernel_contract.md's tolerances).
import math  # noqa: E402

import hypothesis.strategies as st  # noqa: E402


def assert_matches(out, ref, *, params, noise_mode, output_mode, sixteen_bit):
    """The contract's comparison; returns the max abs error seen (for reporting)."""
    assert out.shape == ref.shape and out.dtype == ref.dtype
    a, b = out.double(), ref.double()
    err = (a - b).abs()
    if sixteen_bit:
        assert bool((err <= 1e-2 * b.abs() + 1e-2).all()), f"16-bit: max err {float(err.max())}"
        return float(err.max())
    bad = err > 1e-5 * b.abs() + 1e-5
    if not bool(bad.any()):
        return float(err.max())
    # only a Poisson floor() flip (one count, spread by the blur) may exceed the tolerance
    assert params is not None and noise_mode == 2, f"max err {float(err.max())} at {bad.nonzero()[:5].tolist()}"
    n_bad = int(bad.sum())
    # 0.1% of the pixels (at least one pixel per example: the hypothesis images are tiny)
    assert n_bad <= max(1, math.floor(1e-3 * bad.numel())), f"{n_bad} of {bad.numel()} pixels off"
    if output_mode == 1:  # counts: one count
        assert bool((err[bad] <= 1.0 + 1e-4 * b.abs()[bad]).all())
    else:  # attenuation: one count is 1/q, q = n0 exp(-y)
        n0 = params[:, 0].double().view(-1, 1, 1, 1).expand_as(b)
        q = (n0 * torch.exp(-b)).clamp_min(0.5)
        assert bool((err[bad] <= 2.0 / q[bad]).all()), f"max err {float(err[bad].max())}"
    return float(err.max())


def make_bank(N, H, W, dtype, layout, gen):
    """Bank layers with values like real attenuation line integrals, in one of several layouts."""
    def one(lo, hi):
        if layout == "transposed":  # (N,W,H) storage, viewed as (N,H,W)
            x = lo + (hi - lo) * torch.rand(N, W, H, generator=gen)
            return x.to(dtype).transpose(1, 2)
        if layout == "strided":  # every other column of a wider tensor, every other entry
            x = lo + (hi - lo) * torch.rand(2 * N, H, 2 * W, generator=gen)
            return x.to(dtype)[::2, :, ::2]
        return (lo + (hi - lo) * torch.rand(N, H, W, generator=gen)).to(dtype)

    return one(0.2, 1.2), one(0.0, 0.8), one(0.0, 0.6)


SHIFTS = st.one_of(
    st.sampled_from([0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -3.0, 0.25, -0.75, 40.0, -40.0, 1e4, -1e4]),
    st.floats(-6.0, 6.0, allow_nan=False, width=32),
)
DTYPES = st.sampled_from([torch.float32, torch.float16, torch.bfloat16])


@st.composite
def backend_cases(draw, heights, widths, blurs=(0.0, 0.4, 0.6, 1.3)):
    """One random call of the fused operator: bank, indices, shifts, detector rows, modes, dtypes."""
    B = draw(st.integers(1, 3))
    N = draw(st.integers(1, 3))
    params = None
    if draw(st.booleans()) or draw(st.booleans()):
        params = [[
            draw(st.sampled_from([5.0, 50.0, 300.0, 1000.0, 2000.0])),   # n0
            draw(st.sampled_from([0.0, 0.0, 0.0, 0.05, 0.3])),          # scatter-to-primary
            draw(st.sampled_from([0.7, 2.0, 6.0])),                     # scatter sigma, px
            draw(st.sampled_from(list(blurs))),                         # blur sigma, px
            draw(st.sampled_from([0.0, 0.0, 2.0])),                     # electronic sigma, counts
        ] for _ in range(B)]
    return dict(
        B=B, N=N, H=draw(st.sampled_from(list(heights))), W=draw(st.sampled_from(list(widths))),
        index=draw(st.lists(st.integers(0, N - 1), min_size=B, max_size=B)),
        disp=[[draw(SHIFTS), draw(SHIFTS)] for _ in range(B)], params=params,
        dtype=draw(DTYPES), layout=draw(st.sampled_from(["contiguous", "transposed", "strided"])),
        interp=draw(st.sampled_from(["linear", "cubic"])),
        noise_mode=draw(st.sampled_from([0, 1, 2])),
        output_mode=draw(st.sampled_from([0, 0, 1])),
        move_lower=draw(st.booleans()),
        out_dtype=draw(DTYPES),
        seed=draw(st.sampled_from([0, 1, 2**32 + 7, 2**64 - 1])),
        sample_index=draw(st.lists(st.integers(0, 2**40), min_size=B, max_size=B, unique=True)),
        min_counts=draw(st.sampled_from([0.5, 1.0])),
        gen_seed=draw(st.integers(0, 2**16)),
    )


def run_against_reference(fn, c):
    """``fn`` (a backend's synthesize op) and the reference on the case ``c``: (out, ref, params)."""
    from lsn_fast.physics.reference import synthesize_reference

    gen = torch.Generator().manual_seed(c["gen_seed"])
    soft, upper, lower = make_bank(c["N"], c["H"], c["W"], c["dtype"], c["layout"], gen)
    index = torch.tensor(c["index"], dtype=torch.int64)
    disp = torch.tensor(c["disp"], dtype=torch.float32)
    params = None if c["params"] is None else torch.tensor(c["params"], dtype=torch.float32)
    kw = dict(
        move_lower=c["move_lower"], seed=c["seed"], sample_index=torch.tensor(c["sample_index"], dtype=torch.int64),
        noise_mode=c["noise_mode"], output_mode=c["output_mode"], interp=c["interp"],
        min_counts=c["min_counts"], out_dtype=c["out_dtype"],
    )
    out = fn(soft, upper, lower, index, disp, params, **kw)
    ref = synthesize_reference(soft, upper, lower, index, disp, params, **kw)
    return out, ref, params


def assert_case_matches(c, out, ref, params):
    """:func:`assert_matches` with the case's modes (16-bit tolerance when storage or output is 16 bit)."""
    sixteen = c["dtype"] != torch.float32 or c["out_dtype"] != torch.float32
    return assert_matches(out, ref, params=params, noise_mode=c["noise_mode"], output_mode=c["output_mode"],
                          sixteen_bit=sixteen)


def whole_pixel_copy(img: torch.Tensor, d) -> torch.Tensor:
    """(H,W) image read at whole-pixel offsets d = (dy, dx), edge-clamped: an independent reference
    for whole-pixel bone moves (not built on reference.translate). Asserts d holds whole numbers."""
    H, W = img.shape
    dy, dx = int(d[0]), int(d[1])
    assert (dy, dx) == (float(d[0]), float(d[1]))
    ys = (torch.arange(H) - dy).clamp(0, H - 1)
    xs = (torch.arange(W) - dx).clamp(0, W - 1)
    return img[ys][:, xs]
