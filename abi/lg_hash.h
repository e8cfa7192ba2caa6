/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bob Jenkins' lookup3 (the kernel's jhash), as one header for BPF, DPDK and
 * the agent: the backend choice of SPEC §5 must be bit-identical everywhere,
 * so every side hashes the same bytes with this code.
 */
#ifndef LG_HASH_H
#define LG_HASH_H

#include <linux/types.h>

#define LG_JHASH_INITVAL 0xdeadbeef
/* Seed of the flow hash that picks a Maglev slot; part of the ABI. */
#define LG_FLOW_HASH_SEED 0x4c4b4731u

static inline __u32 lg_rol32(__u32 w, unsigned int s) { return (w << s) | (w >> ((-s) & 31)); }

#define LG_JHASH_MIX(a, b, c)                          \
	do {                                           \
		a -= c; a ^= lg_rol32(c, 4);  c += b;  \
		b -= a; b ^= lg_rol32(a, 6);  a += c;  \
		c -= b; c ^= lg_rol32(b, 8);  b += a;  \
		a -= c; a ^= lg_rol32(c, 16); c += b;  \
		b -= a; b ^= lg_rol32(a, 19); a += c;  \
		c -= b; c ^= lg_rol32(b, 4);  b += a;  \
	} while (0)

#define LG_JHASH_FINAL(a, b, c)                 \
	do {                                    \
		c ^= b; c -= lg_rol32(b, 14);   \
		a ^= c; a -= lg_rol32(c, 11);   \
		b ^= a; b -= lg_rol32(a, 25);   \
		c ^= b; c -= lg_rol32(b, 16);   \
		a ^= c; a -= lg_rol32(c, 4);    \
		b ^= a; b -= lg_rol32(a, 14);   \
		c ^= b; c -= lg_rol32(b, 24);   \
	} while (0)

/* jhash2: hash an array of 32-bit words (the kernel's jhash2). */
static inline __u32 lg_jhash2(const __u32 *k, __u32 length, __u32 initval)
{
	__u32 a, b, c;

	a = b = c = LG_JHASH_INITVAL + (length << 2) + initval;
	while (length > 3) {
		a += k[0];
		b += k[1];
		c += k[2];
		LG_JHASH_MIX(a, b, c);
		length -= 3;
		k += 3;
	}
	switch (length) {
	case 3: c += k[2]; /* fall through */
	case 2: b += k[1]; /* fall through */
	case 1: a += k[0];
		LG_JHASH_FINAL(a, b, c);
		break;
	default:
		break;
	}
	return c;
}

/*
 * Hash of a flow's original 5-tuple for the backend choice: src[16], dst[16],
 * then (sport << 16 | dport) and proto, ports as they are on the wire
 * (network byte order, read as bytes). 10 words.
 */
static inline __u32 lg_flow_hash(const __u8 src[16], const __u8 dst[16], __u16 sport_be,
				 __u16 dport_be, __u8 proto)
{
	__u32 w[10];
	int i;

	for (i = 0; i < 4; i++) {
		w[i] = (__u32)src[4 * i] << 24 | (__u32)src[4 * i + 1] << 16 |
		       (__u32)src[4 * i + 2] << 8 | (__u32)src[4 * i + 3];
		w[4 + i] = (__u32)dst[4 * i] << 24 | (__u32)dst[4 * i + 1] << 16 |
			   (__u32)dst[4 * i + 2] << 8 | (__u32)dst[4 * i + 3];
	}
	{
		const __u8 *sp = (const __u8 *)&sport_be;
		const __u8 *dp = (const __u8 *)&dport_be;
		w[8] = (__u32)sp[0] << 24 | (__u32)sp[1] << 16 | (__u32)dp[0] << 8 | dp[1];
	}
	w[9] = proto;
	return lg_jhash2(w, 10, LG_FLOW_HASH_SEED);
}

#endif /* LG_HASH_H */
