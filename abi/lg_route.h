/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Addresses that no router forwards, one definition for the reference
 * evaluator, explain, the XDP program and the DPDK fast path: a packet that
 * would be forwarded with one of them is dropped `no-route` (docs/decisions.md,
 * "Addresses nothing forwards"). The kernel's own forwarding refuses them
 * (martians, RFC 1812 5.3.7, RFC 4291 2.5); bpf_fib_lookup checks only some,
 * and linkgate-dpdk's default route would cover the rest.
 * Addresses are 16 bytes; an IPv4 one is in the last 4.
 */
#ifndef LG_ROUTE_H
#define LG_ROUTE_H

#include <linux/types.h>

/* ::, ::1 (first 15 bytes zero, then 0 or 1) and ::ffff:0:0/96 (IPv4-mapped,
 * which an IPv6 header must not carry: RFC 4291 2.5.5.2). */
static inline int lg_v6_unroutable(const __u8 *a)
{
	__u8 z = 0;
	int i;

	for (i = 0; i < 10; i++)
		z |= a[i];
	if (z)
		return 0;
	if (a[10] == 0xff && a[11] == 0xff)
		return 1;
	z = a[10] | a[11] | a[12] | a[13] | a[14];
	return !z && a[15] <= 1;
}

/* Whether a packet from src to dst (dst after translation) must not be
 * forwarded. v4: IPv4 addresses in bytes 12-15. Multicast and broadcast
 * destinations never get here: they go to the host first. */
static inline int lg_unroutable(const __u8 *src, const __u8 *dst, int v4)
{
	if (v4) {
		/* Sources 0/8, 127/8, multicast 224/4 and 255.255.255.255;
		 * destinations 0/8 and 127/8. */
		__u8 s = src[12], d = dst[12];

		if (s == 0 || s == 127 || (s >= 224 && s <= 239) || d == 0 || d == 127)
			return 1;
		return s == 255 && src[13] == 255 && src[14] == 255 && src[15] == 255;
	}
	/* Sources also multicast (ff00::/8); both link-local (fe80::/10),
	 * which does not leave its link (neighbour discovery to one goes to
	 * the host before this). */
	if (src[0] == 0xff || (src[0] == 0xfe && (src[1] & 0xc0) == 0x80) ||
	    (dst[0] == 0xfe && (dst[1] & 0xc0) == 0x80))
		return 1;
	return lg_v6_unroutable(src) || lg_v6_unroutable(dst);
}

#endif /* LG_ROUTE_H */
