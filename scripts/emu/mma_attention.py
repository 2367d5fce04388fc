# Lane-level emulation of attention_mma_h<HD> (wip/next kernels/mma.hip): the
# fragment layouts of ldmatrix(.trans) and mma.m16n8k16 as the PTX ISA
# documents them, the kernel's addressing, masking and online softmax.
import numpy as np
rng = np.random.default_rng(1)

def h(x): return x.astype(np.float16).astype(np.float32)

def ldmatrix_x4(tile, addr, trans=False):
    # addr(lane) -> (row, col) of the 8 halves lane provides (matrix lane//8, row lane%8)
    mats = []
    for m in range(4):
        rows = []
        for r in range(8):
            rr, cc = addr(m * 8 + r)
            rows.append(tile[rr, cc:cc + 8])
        mats.append(np.array(rows))
    regs = np.zeros((32, 4, 2), np.float32)
    for t in range(32):
        for i in range(4):
            M = mats[i].T if trans else mats[i]
            regs[t, i, 0] = M[t // 4, 2 * (t % 4)]
            regs[t, i, 1] = M[t // 4, 2 * (t % 4) + 1]
    return regs

def mma(c, a, b):
    # c[32][4], a[32][4][2], b[32][2][2] (per-lane registers as value pairs)
    A = np.zeros((16, 16)); B = np.zeros((16, 8)); C = np.zeros((16, 8))
    for l in range(32):
        g, q = l // 4, l % 4
        for e in range(2):
            A[g, 2*q+e] = a[l, 0, e]; A[g+8, 2*q+e] = a[l, 1, e]
            A[g, 2*q+8+e] = a[l, 2, e]; A[g+8, 2*q+8+e] = a[l, 3, e]
            B[2*q+e, g] = b[l, 0, e]; B[2*q+8+e, g] = b[l, 1, e]
            C[g, 2*q+e] = c[l, e]; C[g+8, 2*q+e] = c[l, 2+e]
    C = C + A @ B
    out = np.zeros((32, 4))
    for l in range(32):
        g, q = l // 4, l % 4
        for e in range(2):
            out[l, e] = C[g, 2*q+e]; out[l, 2+e] = C[g+8, 2*q+e]
    return out

def kernel_block(q, k, v, start_pos, n_rows, r0, HD, scale, window, softcap):
    LD = HD + 8
    KS, NO = HD // 16, HD // 8
    # Q tile (64 rows) as f16 in "ks"
    ks = np.zeros((64, LD), np.float32)
    n = min(64, n_rows - r0)
    ks[:n, :HD] = h(q[r0:r0+n])
    out = np.zeros((64, HD))
    last = start_pos + min(r0 + 64, n_rows) - 1
    first = max(0, start_pos + r0 - window + 1) if window > 0 else 0
    for w in range(4):
        qf = [ldmatrix_x4(ks, lambda l: (w*16 + ((l >> 3) & 1)*8 + (l & 7), s*16 + (l >> 4)*8)) for s in range(KS)]
        o = np.zeros((NO, 32, 4))
        m_a = np.full(32, -np.inf); m_b = np.full(32, -np.inf); l_a = np.zeros(32); l_b = np.zeros(32)
        lanes = np.arange(32); g = lanes // 4; qd = lanes % 4
        ra = r0 + w*16 + g; rb = ra + 8; pa = start_pos + ra; pb = start_pos + rb
        lo_a = np.maximum(0, pa - window + 1) if window > 0 else np.zeros(32, int)
        lo_b = np.maximum(0, pb - window + 1) if window > 0 else np.zeros(32, int)
        for j0 in range(first, last + 1, 64):
            nk = min(64, last - j0 + 1)
            kt = np.zeros((64, LD), np.float32); vt = np.zeros((64, LD), np.float32)
            kt[:nk, :HD] = h(k[j0:j0+nk]); vt[:nk, :HD] = h(v[j0:j0+nk])
            sc = np.zeros((8, 32, 4))
            for s in range(KS):
                for jj in range(4):
                    r = ldmatrix_x4(kt, lambda l: (jj*16 + (l >> 4)*8 + (l & 7), s*16 + ((l >> 3) & 1)*8))
                    sc[2*jj] = mma(sc[2*jj], qf[s], r[:, 0:2])
                    sc[2*jj+1] = mma(sc[2*jj+1], qf[s], r[:, 2:4])
            tm_a = np.full(32, -np.inf); tm_b = np.full(32, -np.inf)
            for j in range(8):
                for e in range(4):
                    key = j0 + j*8 + 2*qd + (e & 1)
                    rowb = e >= 2
                    p = pb if rowb else pa; lo = lo_b if rowb else lo_a
                    x = sc[j, :, e] * scale
                    if softcap > 0: x = softcap * np.tanh(x / softcap)
                    x = np.where((key > p) | (key < lo) | (key > last), -np.inf, x)
                    sc[j, :, e] = x
                    if rowb: tm_b = np.maximum(tm_b, x)
                    else: tm_a = np.maximum(tm_a, x)
            def quad_max(x): 
                x = np.maximum(x, x[lanes ^ 1]); return np.maximum(x, x[lanes ^ 2])
            def quad_sum(x):
                x = x + x[lanes ^ 1]; return x + x[lanes ^ 2]
            tm_a, tm_b = quad_max(tm_a), quad_max(tm_b)
            mn_a, mn_b = np.maximum(m_a, tm_a), np.maximum(m_b, tm_b)
            with np.errstate(invalid='ignore'):
                c_a = np.where(mn_a == -np.inf, 1.0, np.exp(m_a - mn_a))
                c_b = np.where(mn_b == -np.inf, 1.0, np.exp(m_b - mn_b))
            s_a = np.zeros(32); s_b = np.zeros(32)
            for j in range(8):
                for e in range(4):
                    mn = mn_b if e >= 2 else mn_a
                    with np.errstate(invalid='ignore'):
                        pr = np.where(sc[j, :, e] == -np.inf, 0.0, np.exp(sc[j, :, e] - mn))
                    sc[j, :, e] = pr
                    if e >= 2: s_b += pr
                    else: s_a += pr
            s_a, s_b = quad_sum(s_a), quad_sum(s_b)
            l_a = l_a * c_a + s_a; l_b = l_b * c_b + s_b; m_a, m_b = mn_a, mn_b
            o[:, :, 0] *= c_a; o[:, :, 1] *= c_a; o[:, :, 2] *= c_b; o[:, :, 3] *= c_b
            for kk in range(4):
                pa4 = np.zeros((32, 4, 2))
                pa4[:, 0] = h(sc[2*kk][:, 0:2]); pa4[:, 1] = h(sc[2*kk][:, 2:4])
                pa4[:, 2] = h(sc[2*kk+1][:, 0:2]); pa4[:, 3] = h(sc[2*kk+1][:, 2:4])
                for nb in range(0, NO, 2):
                    r = ldmatrix_x4(vt, lambda l: (kk*16 + ((l >> 3) & 1)*8 + (l & 7), nb*8 + (l >> 4)*8), trans=True)
                    o[nb] = mma(o[nb], pa4, r[:, 0:2])
                    o[nb+1] = mma(o[nb+1], pa4, r[:, 2:4])
        ia = np.where(l_a > 0, 1 / np.where(l_a > 0, l_a, 1), 0); ib = np.where(l_b > 0, 1 / np.where(l_b > 0, l_b, 1), 0)
        for j in range(NO):
            d = j*8 + 2*qd
            for l in range(32):
                out[w*16 + g[l], d[l]:d[l]+2] = o[j, l, 0:2] * ia[l]
                out[w*16 + g[l] + 8, d[l]:d[l]+2] = o[j, l, 2:4] * ib[l]
    return out[:n]

def reference(q, k, v, start_pos, scale, window, softcap):
    R = q.shape[0]; out = np.zeros_like(q)
    for i in range(R):
        p = start_pos + i
        lo = max(0, p - window + 1) if window > 0 else 0
        s = (k[lo:p+1] @ q[i]) * scale
        if softcap > 0: s = softcap * np.tanh(s / softcap)
        e = np.exp(s - s.max()); e /= e.sum()
        out[i] = e @ v[lo:p+1]
    return out

for HD, start, rows, window, softcap in [(64, 0, 64, 0, 0.0), (128, 20, 80, 0, 0.0), (128, 90, 150, 100, 30.0), (64, 300, 37, 70, 40.0)]:
    total = start + rows
    q = rng.standard_normal((rows, HD)).astype(np.float32)
    k = rng.standard_normal((total, HD)).astype(np.float32)
    v = rng.standard_normal((total, HD)).astype(np.float32)
    scale = 1 / np.sqrt(HD)
    got = np.concatenate([kernel_block(q, k, v, start, rows, r0, HD, scale, window, softcap) for r0 in range(0, rows, 64)])
    want = reference(q, k, v, start, scale, window, softcap)
    err = np.abs(got - want).max() / np.abs(want).max()
    print(f"HD {HD} start {start} rows {rows} window {window} softcap {softcap}: relative error {err:.2e}")
