"""The Triton programs of the tensor-core depth-wise conv; see :mod:`._triton_tc_depthwise`.

Every kernel takes NCHW contiguous tensors and "same" padding ``P = K // 2``. The banded kernels
fold the rows of all images into the GEMM's M dimension, either *h-major* (``m = h * N + n``:
the rows of a tile share one or a few output rows ``h``, so the kernel rows (forward) and row
tiles (weight gradient) that fall outside the image are skipped rather than multiplied by zeros,
at every batch size) or *n-major* (``m = n * H + h``: a tile is a strip of consecutive rows of
one image, so consecutive kernel rows (forward) or the kernel rows of a group (weight gradient)
re-read mostly the same input rows, from L1 instead of L2).

``N_BUCKET``, ``H_BUCKET`` and ``W_BUCKET`` are not read by the kernels: they are the autotuner's
key (powers of two of the sizes), so every shape of a bucket reuses one tuning. No size argument
is specialised, so a new size of a bucket reuses the compiled kernel too.

``ALIGN`` (8 or 1) divides W: the kernels write ``W = W // ALIGN * ALIGN``, a no-op that tells the
compiler so, and align the starts of their input slices to it, which lets every row segment
load as 16-byte vectors (``cp.async`` pipelined for bf16 too) from 16-byte aligned tensors.

``PRECISION`` is the ``tl.dot`` input precision ('tf32' or 'ieee'; ignored by fp16/bf16 operands,
which always run on tensor cores). ``UPCAST`` widens bf16 operands to fp32 before the dot, for
Triton's interpreter only (see ``_triton_depthwise._upcast``).
"""
import triton
import triton.language as tl

_SIZES = ['N', 'C', 'H', 'W', 'N_BUCKET', 'H_BUCKET', 'W_BUCKET']

@triton.jit(do_not_specialize=_SIZES)
def banded_fwd_kernel(x_ptr, w_ptr, b_ptr, y_ptr, N, C, H, W, N_BUCKET, H_BUCKET, W_BUCKET,
                      K: tl.constexpr, HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
                      UPCAST: tl.constexpr, ALIGN: tl.constexpr, BLOCK_M: tl.constexpr,
                      BLOCK_W: tl.constexpr, BLOCK_K: tl.constexpr, H_MAJOR: tl.constexpr):
    """One (BLOCK_M folded rows) x (BLOCK_W output columns) tile of channel ``program_id(1)``:
    ``acc += X_i[:, band] @ T_i[band, :]`` over the kernel rows ``i`` the tile's rows reach and
    the BLOCK_K-wide slices of input columns inside both the image and the tile's band."""
    P: tl.constexpr = K // 2
    W = W // ALIGN * ALIGN
    pid = tl.program_id(0)
    c = tl.program_id(1)
    tiles_w = tl.cdiv(W, BLOCK_W)
    m0 = (pid // tiles_w) * BLOCK_M
    w0 = (pid % tiles_w) * BLOCK_W
    rows = m0 + tl.arange(0, BLOCK_M)
    row_ok = rows < N * H
    if H_MAJOR:
        h = rows // N
        image = rows % N
        h_lo = m0 // N
        h_hi = tl.minimum(H - 1, (m0 + BLOCK_M - 1) // N)
    else:
        h = rows % H
        image = rows // H
        last = tl.minimum(m0 + BLOCK_M, N * H) - 1
        one_image = m0 // H == last // H
        h_lo = tl.where(one_image, m0 % H, 0)
        h_hi = tl.where(one_image, last % H, H - 1)
    plane = (image.to(tl.int64) * C + c) * H * W
    out_cols = w0 + tl.arange(0, BLOCK_W)

    # Kernel rows that reach some output row of the tile.
    i_lo = tl.maximum(0, P - h_hi)
    i_hi = tl.minimum(K, H + P - h_lo)
    # Slices start at the band's first column inside the image (rounded down to ALIGN) and stop
    # at its last one.
    col0 = tl.maximum(0, w0 - P) // ALIGN * ALIGN
    num_chunks = tl.cdiv(tl.minimum(W, w0 + BLOCK_W + P) - col0, BLOCK_K)
    chunk = tl.arange(0, BLOCK_K)

    acc = tl.zeros((BLOCK_M, BLOCK_W), dtype=tl.float32)
    # One flat loop over (kernel row, slice), so the software pipeline spans the whole
    # contraction instead of restarting every kernel row.
    for step in range((i_hi - i_lo) * num_chunks):
        i = i_lo + step // num_chunks
        in_h = h + (i - P)
        in_cols = col0 + (step % num_chunks) * BLOCK_K + chunk
        a = tl.load(x_ptr + (plane + in_h * W)[:, None] + in_cols[None, :],
                    mask=(row_ok & (in_h >= 0) & (in_h < H))[:, None] & (in_cols < W)[None, :],
                    other=0.0)
        # Toeplitz slice of kernel row i: T[l, w] = weight[i, l - w + P] inside the band.
        tap = in_cols[:, None] - out_cols[None, :] + P
        band = tl.load(w_ptr + (c * K + i) * K + tap, mask=(tap >= 0) & (tap < K), other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
            band = band.to(tl.float32)
        acc = tl.dot(a, band, acc, input_precision=PRECISION)
    if HAS_BIAS:
        acc += tl.load(b_ptr + c).to(tl.float32)
    tl.store(y_ptr + (plane + h * W)[:, None] + out_cols[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=row_ok[:, None] & (out_cols < W)[None, :])


@triton.jit(do_not_specialize=_SIZES)
def toeplitz_fwd_kernel(x_ptr, w_ptr, b_ptr, y_ptr, N, C, H, W, N_BUCKET, H_BUCKET, W_BUCKET,
                        K: tl.constexpr, HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
                        UPCAST: tl.constexpr, ALIGN: tl.constexpr, BLOCK_M: tl.constexpr,
                        BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """``Y[images, q] = X[images, p] @ T[p, q]`` for BLOCK_N output pixels ``q`` of channel
    ``program_id(2)``, ``T[p, q] = weight[hp - hq + P, wp - wq + P]`` generated tile by tile
    from the K x K kernel; ``p`` runs over the input rows within reach of the block's rows."""
    P: tl.constexpr = K // 2
    W = W // ALIGN * ALIGN
    pid_q = tl.program_id(0)
    pid_m = tl.program_id(1)
    c = tl.program_id(2)
    images = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    image_ok = images < N
    plane = (images.to(tl.int64) * C + c) * H * W
    q0 = pid_q * BLOCK_N
    q = q0 + tl.arange(0, BLOCK_N)
    out_h = q // W
    out_w = q % W
    p_lo = tl.maximum(0, q0 // W - P) * W
    p_hi = tl.minimum(H, tl.minimum(H - 1, (q0 + BLOCK_N - 1) // W) + P + 1) * W
    k = tl.arange(0, BLOCK_K)

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for p0 in range(p_lo, p_hi, BLOCK_K):
        p = p0 + k
        a = tl.load(x_ptr + plane[:, None] + p[None, :],
                    mask=image_ok[:, None] & (p < p_hi)[None, :], other=0.0)
        tap_i = (p // W)[:, None] - out_h[None, :] + P
        tap_j = (p % W)[:, None] - out_w[None, :] + P
        toeplitz = tl.load(w_ptr + (c * K + tap_i) * K + tap_j,
                           mask=(tap_i >= 0) & (tap_i < K) & (tap_j >= 0) & (tap_j < K),
                           other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
            toeplitz = toeplitz.to(tl.float32)
        acc = tl.dot(a, toeplitz, acc, input_precision=PRECISION)
    if HAS_BIAS:
        acc += tl.load(b_ptr + c).to(tl.float32)
    tl.store(y_ptr + plane[:, None] + q[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=image_ok[:, None] & (q < H * W)[None, :])


@triton.jit(do_not_specialize=_SIZES + ['NUM_SPLITS'])
def banded_wgrad_kernel(x_ptr, dy_ptr, part_ptr, N, C, H, W, N_BUCKET, H_BUCKET, W_BUCKET,
                        NUM_SPLITS, K: tl.constexpr, PRECISION: tl.constexpr,
                        UPCAST: tl.constexpr, ALIGN: tl.constexpr, BLOCK_M: tl.constexpr,
                        BLOCK_W: tl.constexpr, SPAN: tl.constexpr, GROUP: tl.constexpr,
                        H_MAJOR: tl.constexpr):
    """GROUP kernel rows ``i0 + g`` of channel ``c`` over one column tile and one split of the
    row tiles: ``S[(g, l), w] = sum_m X_{i0+g}[m, base + l] dY[m, w0 + w]`` as one tensor-core
    product whose M stacks the GROUP kernel rows (each output-gradient tile is loaded once for
    all of them), then the band diagonals ``dW[i0 + g, j] = sum S[(g, l), w]`` over
    ``base + l - w0 - w + P = j`` into one partial slot per (split, column tile), summed in a
    fixed order by the caller. ``BLOCK_W`` and ``SPAN`` come from
    ``_triton_tc_depthwise.wgrad_tile``."""
    P: tl.constexpr = K // 2
    W = W // ALIGN * ALIGN
    # Kernel-row group fastest, channel slowest: the programs reading one channel's planes run
    # together and share them through L2.
    groups = tl.cdiv(K, GROUP)
    tiles_w = tl.cdiv(W, BLOCK_W)
    pid = tl.program_id(0)
    i0 = (pid % groups) * GROUP
    slot = (pid // groups) % (NUM_SPLITS * tiles_w)
    c = pid // (groups * NUM_SPLITS * tiles_w)
    split = slot // tiles_w
    w0 = (slot % tiles_w) * BLOCK_W
    # Rows where some kernel row of the group stays inside the image: one range when h-major.
    if H_MAJOR:
        m_lo = tl.maximum(0, P - i0 - GROUP + 1) * N
        m_hi = tl.minimum(H, H + P - i0) * N
    else:
        m_lo = 0
        m_hi = N * H
    # SPAN input columns from ``base`` cover every column the tile's band reads in the image.
    base = tl.maximum(0, tl.minimum(w0 - P, W - SPAN))
    stack = tl.arange(0, GROUP * SPAN)
    shift = i0 + stack // SPAN - P
    in_cols = base + stack % SPAN
    stack_ok = (i0 + stack // SPAN < K) & (in_cols < W)
    out_cols = w0 + tl.arange(0, BLOCK_W)
    tile_m = tl.arange(0, BLOCK_M)

    acc = tl.zeros((GROUP * SPAN, BLOCK_W), dtype=tl.float32)
    for t in range(m_lo // BLOCK_M + split, tl.cdiv(m_hi, BLOCK_M), NUM_SPLITS):
        rows = t * BLOCK_M + tile_m
        row_ok = (rows >= m_lo) & (rows < m_hi)
        if H_MAJOR:
            h = rows // N
            image = rows % N
        else:
            h = rows % H
            image = rows // H
        plane = (image.to(tl.int64) * C + c) * H * W
        grad = tl.load(dy_ptr + (plane + h * W)[:, None] + out_cols[None, :],
                       mask=row_ok[:, None] & (out_cols < W)[None, :], other=0.0)
        in_h = h[:, None] + shift[None, :]
        xs = tl.load(x_ptr + plane[:, None] + in_h * W + in_cols[None, :],
                     mask=row_ok[:, None] & stack_ok[None, :] & (in_h >= 0) & (in_h < H),
                     other=0.0)
        if UPCAST:
            grad = grad.to(tl.float32)
            xs = xs.to(tl.float32)
        acc = tl.dot(tl.trans(xs), grad, acc, input_precision=PRECISION)
    acc = tl.reshape(acc, (GROUP, SPAN, BLOCK_W))
    tap = (base + tl.arange(0, SPAN))[:, None] - out_cols[None, :] + P
    kernel_rows = i0 + tl.arange(0, GROUP)
    out = part_ptr + ((slot * C + c) * K + kernel_rows) * K
    for j in range(K):
        diagonal = tl.sum(tl.sum(tl.where(tap[None, :, :] == j, acc, 0.0), axis=2), axis=1)
        tl.store(out + j, diagonal, mask=kernel_rows < K)
