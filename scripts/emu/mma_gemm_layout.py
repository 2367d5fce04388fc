# The emulator's ldmatrix/mma against the GPU-verified GEMM addressing
# (kernels/mma.hip rf_gemm_f16_tn, wave wm=0, wn=0, one k16 step, i=0, j=0..3).
import numpy as np, sys
sys.argv=['x']
exec(open(__file__.replace('mma_gemm_layout.py', 'mma_attention.py')).read().split("def reference")[0])
rng = np.random.default_rng(3)
A = h(rng.standard_normal((128, 40)).astype(np.float32)); B = h(rng.standard_normal((128, 40)).astype(np.float32))
MT = 4; wm = 0; wn = 0; ks = 0
a_row = lambda l: wm*(16*MT) + ((l >> 3) & 1)*8 + (l & 7); a_col = lambda l: (l >> 4)*8
b_row = lambda l: wn*32 + (l >> 4)*8 + (l & 7); b_col = lambda l: ((l >> 3) & 1)*8
a = ldmatrix_x4(A, lambda l: (a_row(l), ks*16 + a_col(l)))
want = A[:16, :16] @ B[:32, :16].T
for jb in range(2):
    r = ldmatrix_x4(B, lambda l: (b_row(l) + jb*16, ks*16 + b_col(l)))
    for half in range(2):
        c = mma(np.zeros((32, 4)), a, r[:, 2*half:2*half+2])
        j = 2*jb + half
        C = np.zeros((16, 8))
        for l in range(32):
            g, q = l // 4, l % 4
            C[g, 2*q:2*q+2] = c[l, 0:2]; C[g+8, 2*q:2*q+2] = c[l, 2:4]
        print(j, np.abs(C - want[:, j*8:j*8+8]).max())
