/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Incremental Internet checksum updates (RFC 1624, eqn. 3), one definition for
 * the reference evaluator, the XDP program and the DPDK fast path, so that
 * rewritten bytes agree to the bit, including the 0x0000/0xffff choice.
 * Values are 16-bit words as they read big-endian from the packet.
 */
#ifndef LG_CSUM_H
#define LG_CSUM_H

#include <linux/types.h>

static inline __u16 lg_csum_fold(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* Running form: start with lg_csum_begin(old checksum), add each replaced
 * word with lg_csum_add(), finish with lg_csum_end(). At most 2^15 words. */
static inline __u32 lg_csum_begin(__u16 csum) { return (__u16)~csum; }

static inline __u32 lg_csum_add(__u32 acc, __u16 old_word, __u16 new_word)
{
	return acc + (__u16)~old_word + new_word;
}

static inline __u16 lg_csum_end(__u32 acc) { return (__u16)~lg_csum_fold(acc); }

/* Word i (0-based) of a 16-byte address, big-endian. */
static inline __u16 lg_addr_word(const __u8 *a, int i)
{
	return (__u16)((__u16)a[2 * i] << 8 | a[2 * i + 1]);
}

/* Add an address change: 4 bytes (IPv4, bytes 12..15 of the mapped form) or 16. */
static inline __u32 lg_csum_add_addr(__u32 acc, const __u8 old16[16], const __u8 new16[16], int v4)
{
	int i;

	for (i = v4 ? 6 : 0; i < 8; i++)
		acc = lg_csum_add(acc, lg_addr_word(old16, i), lg_addr_word(new16, i));
	return acc;
}

#endif /* LG_CSUM_H */
