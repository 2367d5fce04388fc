# Lane-level emulation of rf_gemm_f16_tn_deep<MT, NT, ST, BK, PF> (kernels/mma.hip):
# every block of a grid with partial edge tiles, unsplit and split over k
# (gridDim.z = 2), for the 128 x 256 tiles of gemm_f16_tn_n256_s3
# (MT = 4, NT = 8, ST = 3), the 128 x 128 / 64 x 128 ones (NT = 4) with
# k-steps of 32, those with k-steps of 64 (BK = 64: gemm_f16_tn_k64_s3,
# gemm_f16_tn_m64_k64_s3), and their double-buffered-fragment twins
# (PF: gemm_f16_tn_k64_s3_pf, gemm_f16_tn_m64_k64_s3_pf). Blocks map to
# tiles as the kernel does (token tiles fastest in launch order). It replays
# the kernel's index math and schedule as written: the cp.async copies of
# rf_gemm_stage into a byte-addressed shared memory of the launcher's size,
# cp.async groups completing only at the kernel's wait_group, its barriers,
# the ldmatrix addresses (and with PF the early ldmatrix of sub-step ks + 1
# and of the next k-step's sub-step 0, into the other fragment buffer),
# mma.m16n8k16 (the ldmatrix/mma layouts of mma_attention.py) and the two
# epilogues. The waves run statement by statement; between two barriers
# their order is free, so the checks count barriers (epochs), not order:
# - each stage's copies cover every 16-byte chunk of the A and B tiles
#   exactly once, inside the stage, from in-bounds global rows (zero-filled
#   past M and N);
# - every ldmatrix reads a copy of the k-step being multiplied that is
#   complete (its wait_group passed) and visible (a barrier after that
#   wait), not one in flight, and the eight 16-byte rows of each of its
#   matrices fall into distinct groups of four banks (no bank conflict);
# - a copy is issued into shared memory only after a barrier that follows
#   every ldmatrix read of the old contents by any wave, and not over a copy
#   still in flight;
# - every mma takes the fragments of its own sub-step and k-step (PF: the
#   right buffer);
# - every tile is taken by exactly one block per k half;
# - every C element is written once (unsplit) or added to twice (split) and
#   C = A B^T.
# Run: python3 scripts/emu/gemm_deep_tiles.py  (numpy; a few minutes).
# With --mutants it instead breaks the PF schedule in three ways (the next
# k-step's first ldmatrix before the barrier, the refill before the
# barrier, one wait_group too few) and checks that each is caught.
import numpy as np
import sys

MUTANTS = '--mutants' in sys.argv
sys.argv = ['x']
exec(open(__file__.replace('gemm_deep_tiles.py', 'mma_attention.py')).read().split("def reference")[0])

def launcher_smem(MT, NT, ST, BK):
    # crates/hip-kernels/src/lib.rs: gemm_deep_kernels / GEMM_N256_KERNEL /
    # GEMM_K64_KERNELS
    if BK == 64:
        assert NT == 4 and ST == 3 and MT in (2, 4)
        return 3 * (32 * MT + 128) * 72 * 2
    if NT == 8:
        assert (MT, ST) == (4, 3)
        return 3 * (128 + 256) * 40 * 2
    return ST * (32 * MT + 128) * 40 * 2


def run(MT, NT, ST, M, N, K, Z, rng, BK=32, PF=False, mutant=None):
    # k-step and shared-memory row length in halves (RF_GK, RF_GLD for BK = 32)
    GK, GLD = BK, BK + 8
    CS = 3 if BK == 64 else 2  # log2 of the 16-byte chunks per row
    assert K % GK == 0
    A = h(rng.standard_normal((M, K)).astype(np.float32))
    B = h(rng.standard_normal((N, K)).astype(np.float32))
    A_BYTES = 32 * MT * GLD * 2
    STAGE_BYTES = A_BYTES + 32 * NT * GLD * 2
    SMEM = launcher_smem(MT, NT, ST, BK)
    assert ST * STAGE_BYTES <= SMEM, (ST * STAGE_BYTES, SMEM)
    assert STAGE_BYTES % (GLD * 2) == 0 and A_BYTES % (GLD * 2) == 0
    rows = SMEM // (GLD * 2)
    C = np.zeros((M, N))
    C_count = np.zeros((M, N), int)
    grid = (-(-N // (32 * NT)), -(-M // (32 * MT)), Z)
    assert (K // GK) % Z == 0
    taken = np.zeros((grid[1], grid[0], Z), int)
    for bz in range(grid[2]):
        for by in range(grid[1]):
            for bx in range(grid[0]):
                # Token tiles fastest in launch order (not RF_GEMM_N_FAST).
                lin = by * grid[0] + bx
                mt, nt = lin % grid[1], lin // grid[1]
                taken[mt, nt, bz] += 1
                # Shared memory as rows of GLD halves: smem the landed values;
                # tag = k-step of the copy that last landed in a half (-1
                # none) and land = the epoch of the wait_group that landed it;
                # pending = a copy to it in flight; read = the last epoch in
                # which any wave read it. epoch = barriers passed so far.
                smem = np.zeros((rows, GLD))
                tag = np.full((rows, GLD), -1)
                land = np.full((rows, GLD), -1)
                pending = np.zeros((rows, GLD), bool)
                read = np.full((rows, GLD), -1)
                epoch = [0]
                groups = []  # pending copies per committed group
                cur = []
                m0, n0 = mt * 32 * MT, nt * 32 * NT
                nk = K // GK // Z
                kb = bz * nk

                def bar():  # __syncthreads()
                    epoch[0] += 1

                def cp_async16(dst, src, nbytes, kstep, region):
                    assert dst % 16 == 0
                    lo, hi = region
                    assert lo <= dst and dst + 16 <= hi, (dst, region)
                    r, c = divmod(dst // 2, GLD)
                    assert c + 8 <= GK  # never into the padding
                    mat, row, k = src
                    assert 0 <= row < mat.shape[0] and 0 <= k and k + 8 <= K
                    # Every wave's reads of the old contents are before a
                    # barrier this copy follows; no copy in flight there.
                    assert (read[r, c:c + 8] < epoch[0]).all(), \
                        ("refill before the barrier after the last read", r, c, kstep)
                    assert not pending[r, c:c + 8].any(), ("copy over a copy in flight", r, c)
                    vals = mat[row, k:k + 8] if nbytes == 16 else np.zeros(8)
                    cur.append((r, c, vals, kstep))

                def commit():
                    groups.append(list(cur))
                    cur.clear()

                def wait_group(n):
                    # All but the n newest groups complete: their data lands
                    # (visible to other threads after the next barrier).
                    while len(groups) > n:
                        for r, c, vals, kstep in groups.pop(0):
                            smem[r, c:c + 8] = vals
                            tag[r, c:c + 8] = kstep
                            land[r, c:c + 8] = epoch[0]
                            pending[r, c:c + 8] = False

                def stage(as_, bs, kt):
                    # rf_gemm_stage<MT, NT>, all 256 threads; coverage count per chunk.
                    cover_a = np.zeros((32 * MT, GK // 8), int)
                    cover_b = np.zeros((32 * NT, GK // 8), int)
                    for tid in range(256):
                        for u in range(NT * BK // 64):
                            i = tid + u * 256
                            r, c = i >> CS, (i & ((1 << CS) - 1)) * 8
                            k = kt * GK + c
                            if r < 32 * MT:
                                am = m0 + r < M
                                cp_async16(as_ + (r * GLD + c) * 2, (A, m0 + r if am else 0, k),
                                           16 if am else 0, kt, (as_, as_ + A_BYTES))
                                cover_a[r, c // 8] += 1
                            bn = n0 + r < N
                            cp_async16(bs + (r * GLD + c) * 2, (B, n0 + r if bn else 0, k),
                                       16 if bn else 0, kt, (bs, bs + STAGE_BYTES - A_BYTES))
                            cover_b[r, c // 8] += 1
                    assert (cover_a == 1).all() and (cover_b == 1).all()
                    for r, c, _, _ in cur:
                        pending[r, c:c + 8] = True

                def ldmatrix(addr_of_lane, kstep):
                    for mat in range(4):
                        groups4 = {(addr_of_lane(l) // 16) % 8 for l in range(8 * mat, 8 * mat + 8)}
                        assert len(groups4) == 8, "bank conflict"

                    def rc(l):
                        a = addr_of_lane(l)
                        assert a % 16 == 0
                        r, c = divmod(a // 2, GLD)
                        assert c + 8 <= GK
                        assert not pending[r, c:c + 8].any(), ("read of a copy in flight", r, c)
                        assert (land[r, c:c + 8] >= 0).all() and (land[r, c:c + 8] < epoch[0]).all(), \
                            ("read without a barrier after the wait", r, c, land[r, c:c + 8], epoch[0])
                        assert (tag[r, c:c + 8] == kstep).all(), (r, c, tag[r, c:c + 8], kstep)
                        read[r, c:c + 8] = epoch[0]
                        return r, c
                    return ldmatrix_x4(smem, rc)

                def frags(wave, as_, ks, kstep):
                    # rf_gemm_frags<MT, NT, LD> for one wave: (k-step, sub-step), a, b
                    wm, wn = wave >> 2, wave & 3
                    bs = as_ + A_BYTES
                    a_row = lambda l: wm * (16 * MT) + ((l >> 3) & 1) * 8 + (l & 7)
                    a_col = lambda l: (l >> 4) * 8
                    b_row = lambda l: wn * (8 * NT) + (l >> 4) * 8 + (l & 7)
                    b_col = lambda l: ((l >> 3) & 1) * 8
                    a = [ldmatrix(lambda l: as_ + ((a_row(l) + i * 16) * GLD + ks * 16 + a_col(l)) * 2,
                                  kstep) for i in range(MT)]
                    b = [None] * NT
                    for j in range(NT // 2):
                        r = ldmatrix(lambda l: bs + ((b_row(l) + j * 16) * GLD + ks * 16 + b_col(l)) * 2,
                                     kstep)
                        b[2 * j] = r[:, 0:2]
                        b[2 * j + 1] = r[:, 2:4]
                    return (kstep, ks), a, b

                def mma_all(wave, fr, kstep, ks):
                    assert fr[0] == (kstep, ks), ("fragments of another sub-step", fr[0], kstep, ks)
                    for i in range(MT):
                        for j in range(NT):
                            acc[wave, i, j] = mma(acc[wave, i, j], fr[1][i], fr[2][j])

                acc = np.zeros((8, MT, NT, 32, 4))
                base = 0
                st_at = lambda s: base + (s % ST) * STAGE_BYTES
                if not PF:
                    for s in range(ST - 1):
                        if s < nk:
                            stage(st_at(s), st_at(s) + A_BYTES, kb + s)
                        commit()
                    for kt in range(nk):
                        wait_group(ST - 2)
                        bar()
                        kn = kt + ST - 1
                        if kn < nk:
                            stage(st_at(kn), st_at(kn) + A_BYTES, kb + kn)
                        commit()
                        for wave in range(8):
                            for ks in range(GK // 16):
                                mma_all(wave, frags(wave, st_at(kt), ks, kb + kt), kb + kt, ks)
                else:
                    S = GK // 16
                    assert S % 2 == 0
                    for s in range(ST):
                        if s < nk:
                            stage(st_at(s), st_at(s) + A_BYTES, kb + s)
                        commit()
                    wait_group(ST - 1)
                    bar()
                    buf = [[frags(w, st_at(0), 0, kb), None] for w in range(8)]
                    for kt in range(nk):
                        as_ = st_at(kt)
                        for ks in range(S):
                            if ks + 1 < S:
                                for w in range(8):
                                    buf[w][(ks + 1) & 1] = frags(w, as_, ks + 1, kb + kt)
                            else:
                                if mutant == 'early_refill' and kt + ST < nk:
                                    stage(as_, as_ + A_BYTES, kb + kt + ST)
                                if mutant == 'late_barrier':
                                    wait_group(ST - 2)
                                    if kt + 1 < nk:
                                        for w in range(8):
                                            buf[w][0] = frags(w, st_at(kt + 1), 0, kb + kt + 1)
                                    bar()
                                else:
                                    wait_group(ST - 1 if mutant == 'short_wait' else ST - 2)
                                    bar()
                                    if kt + 1 < nk:
                                        for w in range(8):
                                            buf[w][0] = frags(w, st_at(kt + 1), 0, kb + kt + 1)
                            for w in range(8):
                                mma_all(w, buf[w][ks & 1], kb + kt, ks)
                        kn = kt + ST
                        if kn < nk and mutant != 'early_refill':
                            stage(as_, as_ + A_BYTES, kb + kn)
                        commit()
                wait_group(0)
                for wave in range(8):
                    wm, wn = wave >> 2, wave & 3
                    for lane in range(32):
                        g, q = lane >> 2, lane & 3
                        for i in range(MT):
                            for j in range(NT):
                                if Z == 1:  # rf_gemm_store
                                    n = n0 + wn * (8 * NT) + j * 8 + 2 * q
                                    for hh in range(2):
                                        m = m0 + wm * (16 * MT) + i * 16 + g + 8 * hh
                                        if m < M:
                                            # float2 or two scalar stores: the same elements
                                            for e in range(2):
                                                if n + e < N:
                                                    C[m, n + e] = acc[wave, i, j, lane, 2 * hh + e]
                                                    C_count[m, n + e] += 1
                                else:  # atomicAdd path
                                    for e in range(4):
                                        m = m0 + wm * (16 * MT) + i * 16 + g + 8 * (e >> 1)
                                        n = n0 + wn * (8 * NT) + j * 8 + 2 * q + (e & 1)
                                        if m < M and n < N:
                                            C[m, n] += acc[wave, i, j, lane, e]
                                            C_count[m, n] += 1
    assert (taken == 1).all()
    assert (C_count == Z).all(), np.unique(C_count)
    want = A.astype(np.float64) @ B.astype(np.float64).T
    err = np.abs(C - want).max() / np.abs(want).max()
    print(f"MT={MT} NT={NT} ST={ST} BK={BK} PF={int(PF)} M={M} N={N} K={K} z={Z}: grid {grid}, "
          f"relative error {err:.1e}")
    assert err < 1e-12


rng = np.random.default_rng(7)
if MUTANTS:
    # Each broken PF schedule must fail a check (6 k-steps: stages reused).
    for mutant in ('late_barrier', 'early_refill', 'short_wait'):
        try:
            run(2, 4, 3, 60, 100, 384, 1, rng, BK=64, PF=True, mutant=mutant)
        except AssertionError as e:
            print(f"mutant {mutant}: caught ({str(e)[:60]})")
        else:
            raise SystemExit(f"mutant {mutant}: not caught")
    print("ok")
    raise SystemExit
# 128 x 256 tiles: two token tiles (the second 72 of 128) and two row tiles
# (the second 44 of 256, odd N); 8 k-steps (stages reused), split: 4 each.
run(4, 8, 3, 200, 300, 256, 1, rng)
run(4, 8, 3, 200, 300, 256, 2, rng)
# Fewer k-steps than stages, and a single partial tile.
run(4, 8, 3, 100, 256, 64, 1, rng)
# The existing instantiations through the same code (NT = 4).
run(4, 4, 3, 130, 200, 128, 2, rng)
run(2, 4, 4, 70, 140, 128, 1, rng)
# k-steps of 64, without and with double-buffered fragments (PF): 128 x 128
# tiles with partial token and row tiles (odd N), 6 k-steps (stages reused
# twice), unsplit and split (3 each: as many as stages); 64 x 128 tiles on
# a 2 x 3 grid (partial last tiles), unsplit and split; fewer k-steps than
# stages (1, and split 2 into 1 each).
for pf in (False, True):
    run(4, 4, 3, 200, 301, 384, 1, rng, BK=64, PF=pf)
    run(4, 4, 3, 200, 301, 384, 2, rng, BK=64, PF=pf)
    run(2, 4, 3, 100, 300, 256, 1, rng, BK=64, PF=pf)
    run(2, 4, 3, 100, 300, 256, 2, rng, BK=64, PF=pf)
    run(4, 4, 3, 60, 100, 64, 1, rng, BK=64, PF=pf)
run(2, 4, 3, 60, 100, 128, 2, rng, BK=64, PF=True)
# PF with 2 sub-steps (k-steps of 32: not instantiated, the template allows it).
run(4, 4, 3, 130, 200, 256, 1, rng, PF=True)
print("ok")
