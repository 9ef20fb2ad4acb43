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
 * The workloads of benches/benches/procs.rs driven by OpenBSD's C imsg: a
 * forked writer and a forked reader over one AF_UNIX socketpair, blocking
 * sockets, each pinned to its own CPU, every C line after a raw-socket
 * ceiling measured in the same run, with the same counts, flush cadences,
 * environment variables (IMSG_BENCH_SCALE, IMSG_BENCH_ONLY, IMSG_BENCH_REPS)
 * and columns. Built by build.sh against a user's copy of imsg.c,
 * imsg-buffer.c and imsg.h, either dialect (IMSG_LEGACY defined for the
 * imsg_init/imsg_read API of imsg.c 1.23 and earlier).
 */

#include <sys/types.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "imsg.h"

#ifdef IMSG_LEGACY
#define LABEL	"Cleg"
#else
#define LABEL	"C"
#endif

#define READ_BUF	(64 * 1024)
#define TY		7
#define HDR		16

enum kind { STREAM, FDS, PINGPONG };

struct workload {
	char		 name[32];
	size_t		 n;
	enum kind	 kind;
	size_t		 payload;
	size_t		 cadence;
};

struct report {
	uint64_t	 allocs;
	uint64_t	 frames;
};

struct side_usage {
	double		 cpu;
	long		 minflt;
	uint64_t	 allocs;
	long		 nvcsw;
};

struct run_result {
	double		 secs;
	uint64_t	 bytes;
	uint64_t	 frames;
	struct side_usage w, r;
};

typedef struct report (*side_fn)(int, const struct workload *);

/* Allocations made through malloc, calloc and realloc (ld --wrap). */
static uint64_t allocs;

void	*__real_malloc(size_t);
void	*__real_calloc(size_t, size_t);
void	*__real_realloc(void *, size_t);

void *
__wrap_malloc(size_t n)
{
	allocs++;
	return (__real_malloc(n));
}

void *
__wrap_calloc(size_t n, size_t m)
{
	allocs++;
	return (__real_calloc(n, m));
}

void *
__wrap_realloc(void *p, size_t n)
{
	allocs++;
	return (__real_realloc(p, n));
}

static size_t
env_size(const char *name, size_t def)
{
	const char	*v = getenv(name);
	char		*end;
	unsigned long	 n;

	if (v == NULL || *v == '\0')
		return (def);
	n = strtoul(v, &end, 10);
	return (*end == '\0' ? n : def);
}

static void
pin(int i)
{
	cpu_set_t	 set, one;
	int		 allowed[CPU_SETSIZE], n = 0, c;

	if (sched_getaffinity(0, sizeof(set), &set) == -1)
		return;
	for (c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &set))
			allowed[n++] = c;
	if (n < 2)
		return;
	CPU_ZERO(&one);
	CPU_SET(allowed[i % n], &one);
	sched_setaffinity(0, sizeof(one), &one);
}

/* One frame as imsg sends it: header (type 7, id 0, pid 0) and payload. */
static size_t
frame_bytes(unsigned char *out, size_t payload, int c, int fd)
{
	uint32_t	 w[4] = { TY, 0, 0, 0 };

#ifdef IMSG_LEGACY
	w[1] = (uint32_t)(HDR + payload) | (fd ? 1u << 16 : 0);
#else
	w[1] = (uint32_t)(HDR + payload) | (fd ? 1u << 31 : 0);
#endif
	memcpy(out, w, HDR);
	memset(out + HDR, c, payload);
	return (HDR + payload);
}

static int
devnull(void)
{
	int	 fd;

	if ((fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) == -1)
		err(1, "/dev/null");
	return (fd);
}

static int
dupfd(int fd)
{
	int	 d;

	if ((d = fcntl(fd, F_DUPFD_CLOEXEC, 0)) == -1)
		err(1, "dup");
	return (d);
}

static void
write_all(int s, const unsigned char *p, size_t len)
{
	ssize_t	 n;

	while (len > 0) {
		if ((n = write(s, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			err(1, "write");
		}
		p += n;
		len -= n;
	}
}

static void
read_exact(int s, unsigned char *p, size_t len)
{
	ssize_t	 n;

	while (len > 0) {
		if ((n = read(s, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			err(1, "read");
		}
		if (n == 0)
			errx(1, "read: end of file");
		p += n;
		len -= n;
	}
}

/* ---- C imsg sides ---- */

static void
c_init(struct imsgbuf *ib, int s, int fdpass)
{
#ifdef IMSG_LEGACY
	(void)fdpass;
	imsg_init(ib, s);
#else
	if (imsgbuf_init(ib, s) == -1)
		err(1, "imsgbuf_init");
	if (fdpass)
		imsgbuf_allow_fdpass(ib);
#endif
}

static void
c_flush(struct imsgbuf *ib)
{
#ifdef IMSG_LEGACY
	if (imsg_flush(ib) == -1)
		err(1, "imsg_flush");
#else
	if (imsgbuf_flush(ib) == -1)
		err(1, "imsgbuf_flush");
#endif
}

/* 1 when bytes were read, 0 at end of file. */
static int
c_read(struct imsgbuf *ib)
{
	for (;;) {
#ifdef IMSG_LEGACY
		ssize_t	 n = imsg_read(ib);

		if (n == -1 && errno == EAGAIN) {
			/* the descriptor guard refused: wait as its users do */
			usleep(10000);
			continue;
		}
		if (n == -1)
			err(1, "imsg_read");
		return (n > 0);
#else
		int	 n = imsgbuf_read(ib);

		if (n == -1)
			err(1, "imsgbuf_read");
		return (n);
#endif
	}
}

static void
c_clear(struct imsgbuf *ib)
{
#ifdef IMSG_LEGACY
	imsg_clear(ib);
#else
	imsgbuf_clear(ib);
#endif
}

static struct report
c_writer(int s, const struct workload *w)
{
	struct imsgbuf	 ib;
	struct imsg	 imsg;
	unsigned char	*data;
	uint64_t	 a0 = 0;
	size_t		 i, k, left;
	int		 null, got;

	c_init(&ib, s, w->kind == FDS);
	switch (w->kind) {
	case STREAM:
		if ((data = malloc(w->payload)) == NULL)
			err(1, NULL);
		memset(data, 0x5a, w->payload);
		a0 = allocs;
		for (left = w->n; left > 0; left -= k) {
			k = left < w->cadence ? left : w->cadence;
			for (i = 0; i < k; i++)
				if (imsg_compose(&ib, TY, 0, 0, -1, data,
				    w->payload) == -1)
					err(1, "imsg_compose");
			c_flush(&ib);
		}
		break;
	case FDS:
		null = devnull();
		data = calloc(1, 8);
		memset(data, 1, 8);
		a0 = allocs;
		for (left = w->n; left > 0; left -= k) {
			k = left < w->cadence ? left : w->cadence;
			for (i = 0; i < k; i++)
				if (imsg_compose(&ib, TY, 0, 0, dupfd(null),
				    data, 8) == -1)
					err(1, "imsg_compose");
			c_flush(&ib);
		}
		break;
	case PINGPONG:
		data = malloc(16);
		memset(data, 3, 16);
		a0 = allocs;
		for (i = 0; i < w->n; i++) {
			if (imsg_compose(&ib, TY, 0, 0, -1, data, 16) == -1)
				err(1, "imsg_compose");
			c_flush(&ib);
			for (got = 0; !got; ) {
				if (!c_read(&ib))
					errx(1, "ping: end of file");
				while (imsg_get(&ib, &imsg) > 0) {
					if (imsg.hdr.len != HDR + 16)
						errx(1, "ping: length");
					imsg_free(&imsg);
					got = 1;
				}
			}
		}
		break;
	}
	c_clear(&ib);
	return ((struct report){ allocs - a0, w->n });
}

static struct report
c_reader(int s, const struct workload *w)
{
	struct imsgbuf	 ib;
	struct imsg	 imsg;
	unsigned char	 data[16];
	uint64_t	 a0, frames = 0;
	ssize_t		 n;
	size_t		 i;
	int		 fd, got;

	c_init(&ib, s, w->kind == FDS);
	a0 = allocs;
	if (w->kind == PINGPONG) {
		memset(data, 4, sizeof(data));
		for (i = 0; i < w->n; i++) {
			for (got = 0; !got; ) {
				if (!c_read(&ib))
					errx(1, "pong: end of file");
				while (imsg_get(&ib, &imsg) > 0) {
					if (imsg.hdr.len != HDR + 16)
						errx(1, "pong: length");
					imsg_free(&imsg);
					got = 1;
				}
			}
			if (imsg_compose(&ib, TY, 0, 0, -1, data, 16) == -1)
				err(1, "imsg_compose");
			c_flush(&ib);
			frames++;
		}
	} else {
		while (c_read(&ib)) {
			while ((n = imsg_get(&ib, &imsg)) > 0) {
				frames++;
				if (w->kind == FDS) {
					if ((fd = imsg_get_fd(&imsg)) == -1)
						errx(1, "descriptor missing");
					close(fd);
				}
				imsg_free(&imsg);
			}
			if (n == -1)
				err(1, "imsg_get");
		}
		if (frames != w->n)
			errx(1, "frames lost: %llu of %zu",
			    (unsigned long long)frames, w->n);
	}
	c_clear(&ib);
	return ((struct report){ allocs - a0, frames });
}

/* ---- raw sides ---- */

static void
send_with_fd(int s, const unsigned char *p, size_t len, int fd)
{
	union {
		struct cmsghdr	 hdr;
		char		 buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct msghdr	 msg;
	struct cmsghdr	*c;
	struct iovec	 iov = { (void *)p, len };
	ssize_t		 n;

	memset(&msg, 0, sizeof(msg));
	memset(&cm, 0, sizeof(cm));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cm.buf;
	msg.msg_controllen = sizeof(cm.buf);
	c = CMSG_FIRSTHDR(&msg);
	c->cmsg_len = CMSG_LEN(sizeof(int));
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	if ((n = sendmsg(s, &msg, 0)) == -1)
		err(1, "sendmsg");
	if ((size_t)n != len)
		errx(1, "short sendmsg");
}

static struct report
raw_writer(int s, const struct workload *w)
{
	unsigned char	 one[HDR + 16], back[HDR + 16];
	unsigned char	*batch;
	size_t		 flen, k, left, i, per;
	uint64_t	 a0 = 0;
	int		 null, d;

	switch (w->kind) {
	case STREAM:
		per = w->cadence < w->n ? w->cadence : w->n;
		flen = HDR + w->payload;
		if ((batch = malloc(per * flen)) == NULL)
			err(1, NULL);
		for (i = 0; i < per; i++)
			frame_bytes(batch + i * flen, w->payload, 0x5a, 0);
		a0 = allocs;
		for (left = w->n; left > 0; left -= k) {
			k = left < w->cadence ? left : w->cadence;
			write_all(s, batch, k * flen);
		}
		break;
	case FDS:
		flen = frame_bytes(one, 8, 1, 1);
		null = devnull();
		a0 = allocs;
		for (i = 0; i < w->n; i++) {
			/* a duplicate, sent, then closed, as a sender does */
			d = dupfd(null);
			send_with_fd(s, one, flen, d);
			close(d);
		}
		break;
	case PINGPONG:
		flen = frame_bytes(one, 16, 3, 0);
		a0 = allocs;
		for (i = 0; i < w->n; i++) {
			write_all(s, one, flen);
			read_exact(s, back, flen);
		}
		break;
	}
	return ((struct report){ allocs - a0, w->n });
}

static struct report
raw_reader(int s, const struct workload *w)
{
	static unsigned char	 buf[READ_BUF];
	unsigned char		 one[HDR + 16], back[HDR + 16];
	uint64_t		 a0, frames = 0, got = 0, total;
	union {
		struct cmsghdr	 hdr;
		char		 buf[CMSG_SPACE(4 * sizeof(int))];
	} cm;
	struct msghdr		 msg;
	struct cmsghdr		*c;
	struct iovec		 iov;
	ssize_t			 n;
	size_t			 i, flen, k;
	int			 fd;

	a0 = allocs;
	switch (w->kind) {
	case STREAM:
		total = (uint64_t)w->n * (HDR + w->payload);
		while ((n = read(s, buf, sizeof(buf))) != 0) {
			if (n == -1) {
				if (errno == EINTR)
					continue;
				err(1, "read");
			}
			got += n;
		}
		if (got != total)
			errx(1, "bytes lost");
		frames = w->n;
		break;
	case FDS:
		for (;;) {
			memset(&msg, 0, sizeof(msg));
			iov.iov_base = buf;
			iov.iov_len = sizeof(buf);
			msg.msg_iov = &iov;
			msg.msg_iovlen = 1;
			msg.msg_control = cm.buf;
			msg.msg_controllen = sizeof(cm.buf);
			if ((n = recvmsg(s, &msg, MSG_CMSG_CLOEXEC)) == -1)
				err(1, "recvmsg");
			if (n == 0)
				break;
			for (c = CMSG_FIRSTHDR(&msg); c != NULL;
			    c = CMSG_NXTHDR(&msg, c)) {
				if (c->cmsg_level != SOL_SOCKET ||
				    c->cmsg_type != SCM_RIGHTS)
					continue;
				k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
				for (i = 0; i < k; i++) {
					memcpy(&fd, CMSG_DATA(c) +
					    i * sizeof(int), sizeof(int));
					close(fd);
					frames++;
				}
			}
		}
		break;
	case PINGPONG:
		flen = frame_bytes(back, 16, 4, 0);
		for (i = 0; i < w->n; i++) {
			read_exact(s, one, flen);
			write_all(s, back, flen);
			frames++;
		}
		break;
	}
	if (frames != w->n)
		errx(1, "frames lost");
	return ((struct report){ allocs - a0, frames });
}

/* ---- running ---- */

static pid_t
spawn(side_fn side, int s, int other, const struct workload *w, int cpu,
    int report)
{
	struct report	 r;
	pid_t		 pid;

	if ((pid = fork()) == -1)
		err(1, "fork");
	if (pid == 0) {
		close(other);
		pin(cpu);
		r = side(s, w);
		close(s);
		if (write(report, &r, sizeof(r)) != sizeof(r))
			err(1, "report");
		_exit(0);
	}
	return (pid);
}

static struct side_usage
reap(pid_t pid)
{
	struct rusage		 ru;
	struct side_usage	 u;
	int			 status;

	if (wait4(pid, &status, 0, &ru) != pid)
		err(1, "wait4");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		errx(1, "child %d failed: status %d", pid, status);
	u.cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	u.minflt = ru.ru_minflt;
	u.nvcsw = ru.ru_nvcsw;
	u.allocs = 0;
	return (u);
}

static struct report
read_report(int fd)
{
	struct report	 r;

	if (read(fd, &r, sizeof(r)) != sizeof(r))
		errx(1, "child report missing");
	close(fd);
	return (r);
}

static double
now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec + ts.tv_nsec / 1e9);
}

static struct run_result
run(const struct workload *w, side_fn writer, side_fn reader)
{
	struct run_result	 res;
	struct report		 wr, rr;
	int			 sp[2], wp[2], rp[2];
	pid_t			 wpid, rpid;
	double			 t0;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == -1 ||
	    pipe2(wp, O_CLOEXEC) == -1 || pipe2(rp, O_CLOEXEC) == -1)
		err(1, "socketpair/pipe");
	t0 = now();
	wpid = spawn(writer, sp[0], sp[1], w, 0, wp[1]);
	rpid = spawn(reader, sp[1], sp[0], w, 1, rp[1]);
	close(sp[0]);
	close(sp[1]);
	close(wp[1]);
	close(rp[1]);
	res.w = reap(wpid);
	res.r = reap(rpid);
	res.secs = now() - t0;
	wr = read_report(wp[0]);
	rr = read_report(rp[0]);
	res.w.allocs = wr.allocs;
	res.r.allocs = rr.allocs;
	res.frames = rr.frames;
	switch (w->kind) {
	case STREAM:
		res.bytes = (uint64_t)w->n * (w->payload + HDR);
		break;
	case FDS:
		res.bytes = (uint64_t)w->n * 24;
		break;
	case PINGPONG:
		res.bytes = (uint64_t)w->n * 64;
		break;
	}
	return (res);
}

static double
show(const char *label, const struct run_result *r, enum kind kind)
{
	const char	*unit;
	double		 rate;

	if (kind == STREAM) {
		rate = r->bytes / r->secs / (1 << 20);
		unit = "MiB/s";
	} else {
		rate = r->frames / r->secs / 1e3;
		unit = kind == FDS ? "k frames/s" : "k round trips/s";
	}
	printf("  %-5s %9.1f %-15s %.3f s  cpu w/r %.2f/%.2f s  "
	    "minflt w/r %ld/%ld  allocs w/r %llu/%llu  sleeps w/r %ld/%ld",
	    label, rate, unit, r->secs, r->w.cpu, r->r.cpu, r->w.minflt,
	    r->r.minflt, (unsigned long long)r->w.allocs,
	    (unsigned long long)r->r.allocs, r->w.nvcsw, r->r.nvcsw);
	return (rate);
}

static void
loadavg(char *out, size_t len)
{
	FILE	*f;
	double	 a, b, c;

	snprintf(out, len, "?");
	if ((f = fopen("/proc/loadavg", "r")) == NULL)
		return;
	if (fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3)
		snprintf(out, len, "%.2f %.2f %.2f", a, b, c);
	fclose(f);
}

int
main(void)
{
	struct workload		 list[8];
	struct run_result	 raw, c;
	const char		*only = getenv("IMSG_BENCH_ONLY");
	size_t			 scale, reps, big, nl = 0, i, rep;
	size_t			 cadences[] = { 1, 100, 1000 };
	double			 rc, rr;
	char			 load[64];

	scale = env_size("IMSG_BENCH_SCALE", 1);
	reps = env_size("IMSG_BENCH_REPS", 1);
	if (scale == 0)
		scale = 1;
	if (reps == 0)
		reps = 1;
	big = 200000 / scale;
	list[nl++] = (struct workload){ "small16", 2000000 / scale, STREAM,
	    16, 1000 };
	list[nl++] = (struct workload){ "mid256", 2000000 / scale, STREAM,
	    256, 1000 };
	for (i = 0; i < 3; i++) {
		list[nl] = (struct workload){ "", big, STREAM, 16368,
		    cadences[i] };
		snprintf(list[nl].name, sizeof(list[nl].name), "large/%zu",
		    cadences[i]);
		nl++;
	}
	list[nl++] = (struct workload){ "fd", big, FDS, 8, 100 };
	list[nl++] = (struct workload){ "pingpong", 20000 / scale, PINGPONG,
	    16, 1 };

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 0; i < nl; i++) {
		if (only != NULL && strstr(list[i].name, only) == NULL)
			continue;
		for (rep = 0; rep < reps; rep++) {
			loadavg(load, sizeof(load));
			printf("%s (n = %zu, rep %zu, load %s)\n", list[i].name,
			    list[i].n, rep + 1, load);
			raw = run(&list[i], raw_writer, raw_reader);
			rr = show("raw", &raw, list[i].kind);
			printf("\n");
			c = run(&list[i], c_writer, c_reader);
			rc = show(LABEL, &c, list[i].kind);
			printf("  %s/raw %.2f\n", LABEL, rc / rr);
		}
	}
	return (0);
}
