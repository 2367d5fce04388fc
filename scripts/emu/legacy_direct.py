"""Checks the word picking of rf_legacy_direct_block and
rf_legacy_pair_blocks (kernels/matvec.hip) against plain byte slicing: for
Q4_0 (18-byte blocks) and Q8_0 (34), every lane p of a group of eight
blocks, and for Q4_0 pairs every lane p of a group of sixteen blocks (lane p
the pair 2p, 2p + 1), random group bytes. Run: python3 this."""
import random
import struct


def emulate(group: bytes, bb: int, p: int):
    nu = 8 if bb == 18 else 12
    nq = (bb - 2) // 4
    s16 = (bb * p) >> 4
    raw = group[16 * s16:16 * s16 + 4 * nu]
    assert len(raw) == 4 * nu, "load past the group"
    u = list(struct.unpack("<%dI" % nu, raw)) + [0]
    dwi = p >> 1
    dw = u[dwi]
    d = (dw >> ((p & 1) * 16)) & 0xFFFF
    r = (p + 1) >> 1
    for b in (4, 2, 1):
        if r & b:
            u = [u[i + b] if i + b <= nu else 0 for i in range(nu + 1)]
    sh = 0 if p & 1 else 16
    q = [(((u[j + 1] << 32) | u[j]) >> sh) & 0xFFFFFFFF for j in range(nq)]
    return d, q


def emulate_pair(group: bytes, p: int):
    s16 = (36 * p) >> 4
    raw = group[16 * s16:16 * s16 + 48]
    assert len(raw) == 48, "load past the group"
    u = list(struct.unpack("<12I", raw))
    o = p & 3
    for b in (2, 1):
        if o & b:
            u = [u[i + b] if i + b < 12 else 0 for i in range(12)]
    d0 = u[0] & 0xFFFF
    d1 = u[4] >> 16
    q0 = [(((u[j + 1] << 32) | u[j]) >> 16) & 0xFFFFFFFF for j in range(4)]
    q1 = [u[5 + j] for j in range(4)]
    return (d0, q0), (d1, q1)


def main():
    rng = random.Random(7)
    for bb in (18, 34):
        for trial in range(200):
            group = bytes(rng.randrange(256) for _ in range(8 * bb))
            for p in range(8):
                blk = group[bb * p:bb * (p + 1)]
                want_d = struct.unpack("<H", blk[:2])[0]
                want_q = list(struct.unpack("<%dI" % ((bb - 2) // 4), blk[2:]))
                d, q = emulate(group, bb, p)
                assert d == want_d and q == want_q, (bb, p, trial)
    print("rf_legacy_direct_block: scale and quant words equal byte slicing (Q4_0, Q8_0, lanes 0..7)")
    for trial in range(200):
        group = bytes(rng.randrange(256) for _ in range(16 * 18))
        for p in range(8):
            got = emulate_pair(group, p)
            for half in range(2):
                blk = group[18 * (2 * p + half):18 * (2 * p + half + 1)]
                want = (struct.unpack("<H", blk[:2])[0], list(struct.unpack("<4I", blk[2:])))
                assert got[half] == want, (p, half, trial)
    print("rf_legacy_pair_blocks: both blocks' scales and quant words equal byte slicing (lanes 0..7)")


main()
