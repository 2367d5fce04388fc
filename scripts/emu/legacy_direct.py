"""Checks the word picking of rf_legacy_direct_block (kernels/matvec.hip)
against plain byte slicing: for Q4_0 (18-byte blocks) and Q8_0 (34), every
lane p of a group of eight blocks, random group bytes. Run: python3 this."""
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


main()
