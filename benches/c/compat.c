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

/* Linux versions of the BSD functions declared in compat.h. */

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"

/*
 * Open descriptors of the process, counted in /proc/self/fd as the portable
 * builds of imsg users do on Linux (the listing's own descriptor included, as
 * they do). The legacy imsg_read calls it before every read.
 */
int
getdtablecount(void)
{
	DIR		*d;
	struct dirent	*e;
	int		 n = 0;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return (0);
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return (n);
}

void
freezero(void *p, size_t len)
{
	if (p == NULL)
		return;
	explicit_bzero(p, len);
	free(p);
}

/* Resize an array, zeroing what is new and clearing what is given back. */
void *
recallocarray(void *p, size_t oldn, size_t newn, size_t size)
{
	size_t	 oldsz, newsz;
	void	*q;

	if (p == NULL)
		return (calloc(newn, size));
	if (size != 0 && newn > SIZE_MAX / size)
		return (NULL);
	oldsz = oldn * size;
	newsz = newn * size;
	if ((q = malloc(newsz)) == NULL)
		return (NULL);
	if (newsz > oldsz) {
		memcpy(q, p, oldsz);
		memset((char *)q + oldsz, 0, newsz - oldsz);
	} else
		memcpy(q, p, newsz);
	freezero(p, oldsz);
	return (q);
}

uint64_t
htonll(uint64_t v)
{
	return (htobe64(v));
}

uint64_t
ntohll(uint64_t v)
{
	return (be64toh(v));
}

#if !defined(__GLIBC__) || __GLIBC__ < 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ < 38)
size_t
strlcpy(char *dst, const char *src, size_t size)
{
	size_t	 len = strlen(src);

	if (size != 0) {
		size_t	 n = len < size - 1 ? len : size - 1;

		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return (len);
}
#endif
