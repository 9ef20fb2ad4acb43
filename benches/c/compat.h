/*
 * Copyright (c) 2026 The imsg-rs authors
 *
 * Permission to use, copy, modify, and distribute this software for any
 * purpose with or without fee is hereby granted, provided that the above
 * copyright notice and this permission notice appear in all copies.
 *
 * THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHORS DISCLAIM ALL WARRANTIES
 * WITH REGARD TO THIS SOFTWARE INCLUDING ALL IMPLIED WARRANTIES OF
 * MERCHANTABILITY AND FITNESS. IN NO EVENT SHALL THE AUTHORS BE LIABLE FOR
 * ANY SPECIAL, DIRECT, INDIRECT, OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES
 * WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN
 * ACTION OF CONTRACT, NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF
 * OR IN CONNECTION WITH THE USE OR PERFORMANCE OF THIS SOFTWARE.
 */

/*
 * The few BSD functions OpenBSD's imsg.c and imsg-buffer.c use that glibc
 * lacks, so those files build unchanged on Linux. Included before them with
 * gcc's -include (and found as "compat.h" by copies that include it, as tmux's
 * compat/ does). Implementations are in compat.c.
 */

#ifndef IMSG_BENCH_COMPAT_H
#define IMSG_BENCH_COMPAT_H

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/uio.h>
#include <stddef.h>
#include <stdint.h>
#include <endian.h>
#include <limits.h>

#ifndef __dead
#define __dead __attribute__((__noreturn__))
#endif

#ifndef TAILQ_CONCAT
#error "sys/queue.h without TAILQ_CONCAT"
#endif

int	 getdtablecount(void);
void	 freezero(void *, size_t);
void	*recallocarray(void *, size_t, size_t, size_t);
uint64_t htonll(uint64_t);
uint64_t ntohll(uint64_t);
#if !defined(__GLIBC__) || __GLIBC__ < 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ < 38)
size_t	 strlcpy(char *, const char *, size_t);
#endif

#endif
