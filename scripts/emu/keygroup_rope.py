# rf_kg_rope (wip/next kernels/attention.hip) in the key-group layout vs a
# plain rotation: normal pairs (2i, 2i+1), NeoX pairs (i, i + n/2), angle index i.
import numpy as np
rng = np.random.default_rng(2)
for HD in (64, 128):
    for neox in (0, 1):
        x = rng.standard_normal(HD)
        cs = [(np.cos(0.3 * (i + 1)), np.sin(0.3 * (i + 1))) for i in range(HD // 2)]
        want = x.copy()
        for i in range(HD // 2):
            a, b = (i, i + HD // 2) if neox else (2 * i, 2 * i + 1)
            c, s = cs[i]
            want[a], want[b] = x[a] * c - x[b] * s, x[a] * s + x[b] * c
        nc = HD // 32
        got = np.zeros(HD)
        for li in range(8):
            v = [x[4 * (c * 8 + li): 4 * (c * 8 + li) + 4].copy() for c in range(nc)]
            if not neox:
                for c in range(nc):
                    f = c * 8 + li
                    for e, pi in ((0, 2 * f), (2, 2 * f + 1)):
                        cc, ss = cs[pi]
                        v[c][e], v[c][e + 1] = v[c][e] * cc - v[c][e + 1] * ss, v[c][e] * ss + v[c][e + 1] * cc
            else:
                p = HD >> 6
                for c in range(p):
                    i0 = 4 * (c * 8 + li)
                    lo, hi = v[c].copy(), v[c + p].copy()
                    for e in range(4):
                        cc, ss = cs[i0 + e]
                        v[c][e], v[c + p][e] = lo[e] * cc - hi[e] * ss, lo[e] * ss + hi[e] * cc
            for c in range(nc):
                got[4 * (c * 8 + li): 4 * (c * 8 + li) + 4] = v[c]
        print(HD, "neox" if neox else "normal", np.abs(got - want).max())
