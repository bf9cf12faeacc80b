// SPDX-License-Identifier: GPL-2.0
/*
 * mkctl: drive multikernel instances from the guest shell.
 *
 *   mkctl load --id N --kernel FILE [--initrd FILE] [--cmdline STR] [--debug]
 *              [--flags F]
 *   mkctl unload --id N
 *   mkctl exec --id N
 *   mkctl halt --id N [--force]
 *   mkctl ping --id N [--count K] [--size B]
 *   mkctl send --id N [--count K] [--size B] [--wait]
 *   mkctl recv [--count K] [--timeout S]
 *   mkctl wait --name NAME --state STATE [--timeout S]
 *   mkctl kexec [--kernel FILE [--initrd FILE] [--cmdline STR]]
 *   mkctl console --id N [--timeout S]
 *
 * console relays stdin to /dev/mkcon<N>, the console of instance N over
 * shared memory, and the console to stdout, until the instance stops (the
 * device's end of file, status 0) or stdin ends.  It waits up to S seconds
 * (default 10) for the device, so it can be started before the instance.
 *
 * kexec syncs and reboots into a kernel in place of this one: the one given
 * (loaded with plain kexec_file_load first), else the one `load --id 0`
 * loaded.  It is how a lab machine leaves its own OS for the kernel under
 * test, with no kexec-tools needed there (mkctl is static).
 *
 * load and unload with --id 0 work on this kernel's own kexec image (plain
 * kexec_file_load), as /proc/kimage lists it with MK_ID 0.  load --flags F
 * adds F (decimal or 0x hex) to the kexec_file_load() flags as they are,
 * for testing what the kernel makes of flags mkctl would never send.  In a kernel
 * started in an instance, ping and send with --id 0 go to the host.
 *
 * send numbers its messages: the first four bytes hold the sequence number
 * (little endian), the rest a pattern derived from it that recv checks.
 *
 * On failure it prints the errno name and message and exits 1; usage
 * errors exit 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/reboot.h>

/* From the multikernel series' uapi headers (not in the host's yet). */
#define KEXEC_FILE_UNLOAD		0x00000001
#define KEXEC_FILE_NO_INITRAMFS		0x00000004
#define KEXEC_FILE_DEBUG		0x00000008
#define KEXEC_MULTIKERNEL		0x00000010
#define KEXEC_MK_ID_MASK		0x0000ffe0
#define KEXEC_MK_ID_SHIFT		5
#define KEXEC_MK_ID(id)			(((id) << KEXEC_MK_ID_SHIFT) & KEXEC_MK_ID_MASK)
#define LINUX_REBOOT_CMD_MULTIKERNEL	0x4D4B4C49
#define LINUX_REBOOT_CMD_MULTIKERNEL_HALT	0x4D4B4C48
#define LINUX_REBOOT_CMD_MULTIKERNEL_HALT_FORCE	0x4D4B4C46

struct multikernel_boot_args {
	int mk_id;
};

/* include/uapi/linux/multikernel.h */
#define MK_MSG_DATA_MAX		112

struct mk_ping {
	uint32_t id;
	uint32_t size;
	uint64_t rtt_ns;
};

struct mk_message {
	uint32_t id;
	uint32_t len;
	uint8_t data[MK_MSG_DATA_MAX];
};

#define MK_IOC_MAGIC		0xB9
#define MK_IOC_PING		_IOWR(MK_IOC_MAGIC, 0, struct mk_ping)
#define MK_IOC_SEND		_IOW(MK_IOC_MAGIC, 1, struct mk_message)

#define MK_DEV			"/dev/multikernel"
#define MK_INSTANCES		"/sys/fs/multikernel/instances"

struct args {
	long id;
	const char *kernel, *initrd, *cmdline, *name, *state;
	unsigned long debug, flags;
	long count, size, timeout;
	int force, wait;
};

static int fail(const char *what)
{
	int err = errno;

	fprintf(stderr, "mkctl: %s: %s: %s\n", what, strerrorname_np(err),
		strerror(err));
	return 1;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: mkctl load --id N --kernel FILE [--initrd FILE] [--cmdline STR] [--debug]\n"
		"                  [--flags F]\n"
		"       mkctl unload --id N\n"
		"       (--id 0: this kernel's own kexec image)\n"
		"       mkctl exec --id N\n"
		"       mkctl halt --id N [--force]\n"
		"       mkctl ping --id N [--count K] [--size B]\n"
		"       mkctl send --id N [--count K] [--size B] [--wait]\n"
		"       (in an instance, --id 0 is the host)\n"
		"       mkctl recv [--count K] [--timeout S]\n"
		"       mkctl wait --name NAME --state STATE [--timeout S]\n"
		"       mkctl kexec [--kernel FILE [--initrd FILE] [--cmdline STR]]\n"
		"       mkctl console --id N [--timeout S]\n");
	return 2;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int do_load(const struct args *a, unsigned long flags)
{
	int kfd, ifd = -1;

	if (!a->kernel)
		return usage();
	flags |= a->debug | a->flags;
	kfd = open(a->kernel, O_RDONLY | O_CLOEXEC);
	if (kfd < 0)
		return fail(a->kernel);
	if (a->initrd) {
		ifd = open(a->initrd, O_RDONLY | O_CLOEXEC);
		if (ifd < 0)
			return fail(a->initrd);
	} else {
		flags |= KEXEC_FILE_NO_INITRAMFS;
	}
	if (syscall(SYS_kexec_file_load, kfd, ifd,
		    a->cmdline ? strlen(a->cmdline) + 1 : 0, a->cmdline, flags))
		return fail("load");
	return 0;
}

static int do_reboot_cmd(const struct args *a, unsigned int cmd,
			 const char *what)
{
	struct multikernel_boot_args args = { .mk_id = (int)a->id };

	if (syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, cmd,
		    &args))
		return fail(what);
	return 0;
}

static int do_kexec(const struct args *a)
{
	int ret = a->kernel ? do_load(a, 0) : 0;

	if (ret)
		return ret;
	if (!a->kernel && (a->initrd || a->cmdline || a->debug))
		return usage();
	sync();
	if (syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
		    LINUX_REBOOT_CMD_KEXEC, NULL))
		return fail("kexec");
	return 0;
}

static int open_dev(int flags)
{
	return open(MK_DEV, flags | O_CLOEXEC);
}

static int do_ping(const struct args *a)
{
	uint64_t *rtt = calloc(a->count, sizeof(*rtt));
	long i;
	int fd;

	fd = open_dev(O_RDWR);
	if (fd < 0 || !rtt)
		return fail(MK_DEV);
	for (i = 0; i < a->count; i++) {
		struct mk_ping p = { .id = a->id, .size = a->size };

		if (ioctl(fd, MK_IOC_PING, &p))
			return fail("ping");
		rtt[i] = p.rtt_ns;
		printf("reply from %ld: seq=%ld size=%ld time=%.1f us\n", a->id,
		       i, a->size, p.rtt_ns / 1000.0);
	}
	qsort(rtt, a->count, sizeof(*rtt), cmp_u64);
	printf("rtt min/median/max = %.1f/%.1f/%.1f us\n", rtt[0] / 1000.0,
	       rtt[a->count / 2] / 1000.0, rtt[a->count - 1] / 1000.0);
	return 0;
}

static uint8_t pattern(uint32_t seq, size_t i)
{
	return (uint8_t)(seq * 7 + i);
}

static int do_send(const struct args *a)
{
	uint64_t give_up;
	long i;
	int fd;

	fd = open_dev(O_RDWR);
	if (fd < 0)
		return fail(MK_DEV);
	for (i = 0; i < a->count; i++) {
		struct mk_message m = { .id = a->id, .len = a->size };
		uint32_t seq = i;

		for (size_t b = 0; b < sizeof(m.data); b++)
			m.data[b] = pattern(seq, b);
		memcpy(m.data, &seq, a->size < 4 ? a->size : 4);
		give_up = now_ns() + 10000000000ull;
		while (ioctl(fd, MK_IOC_SEND, &m)) {
			if (errno != ENOSPC || !a->wait || now_ns() > give_up) {
				fprintf(stderr, "mkctl: send: message %ld of %ld not sent\n",
					i, a->count);
				return fail("send");
			}
			usleep(1000);
		}
	}
	printf("sent %ld messages of %ld bytes to %ld\n", a->count, a->size,
	       a->id);
	return 0;
}

static int do_recv(const struct args *a)
{
	struct pollfd pfd;
	long i;

	pfd.fd = open_dev(O_RDONLY | O_NONBLOCK);
	pfd.events = POLLIN;
	if (pfd.fd < 0)
		return fail(MK_DEV);
	for (i = 0; i < a->count; i++) {
		struct mk_message m;
		uint32_t seq = 0;
		int intact = 1;

		while (read(pfd.fd, &m, sizeof(m)) != sizeof(m)) {
			int n;

			if (errno != EAGAIN)
				return fail("recv");
			n = poll(&pfd, 1, a->timeout * 1000);
			if (n < 0)
				return fail("recv");
			if (!n) {
				errno = ETIMEDOUT;
				fprintf(stderr, "mkctl: recv: %ld of %ld messages in %ld s\n",
					i, a->count, a->timeout);
				return fail("recv");
			}
		}
		memcpy(&seq, m.data, m.len < 4 ? m.len : 4);
		for (size_t b = 4; b < m.len; b++)
			intact &= m.data[b] == pattern(seq, b);
		printf("message from %u: seq=%u len=%u %s\n", m.id, seq, m.len,
		       intact ? "intact" : "corrupt");
	}
	return 0;
}

static int read_status(int fd, char *buf, size_t size)
{
	ssize_t n = pread(fd, buf, size - 1, 0);

	if (n < 0)
		return -1;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

/* Wait for a status change by poll(), which the kernel's kernfs_notify() wakes. */
static int do_wait(const struct args *a)
{
	uint64_t deadline = now_ns() + a->timeout * 1000000000ull;
	char path[256], state[32];
	struct pollfd pfd;

	snprintf(path, sizeof(path), "%s/%s/status", MK_INSTANCES, a->name);
	pfd.fd = open(path, O_RDONLY | O_CLOEXEC);
	pfd.events = POLLPRI;
	if (pfd.fd < 0)
		return fail(path);
	for (;;) {
		uint64_t now = now_ns();
		int n;

		if (read_status(pfd.fd, state, sizeof(state)))
			return fail(path);
		if (!strcmp(state, a->state)) {
			printf("%s\n", state);
			return 0;
		}
		if (now >= deadline)
			break;
		n = poll(&pfd, 1, (deadline - now) / 1000000 + 1);
		if (n < 0)
			return fail("wait");
	}
	errno = ETIMEDOUT;
	fprintf(stderr, "mkctl: wait: %s is still %s after %ld s, not %s\n",
		a->name, state, a->timeout, a->state);
	return fail("wait");
}

/* Copy what @from has to @to; 0 at the end of @from. */
static ssize_t pass(int from, int to)
{
	char buf[4096];
	ssize_t n = read(from, buf, sizeof(buf));

	for (ssize_t done = 0, w; n > 0 && done < n; done += w) {
		w = write(to, buf + done, n - done);
		if (w < 0)
			return -1;
	}
	return n;
}

static int do_console(const struct args *a)
{
	uint64_t deadline = now_ns() + a->timeout * 1000000000ull;
	struct pollfd pfd[2];
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/dev/mkcon%ld", a->id);
	while ((fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
		if (errno != ENOENT || now_ns() >= deadline)
			return fail(path);
		usleep(20000);
	}
	pfd[0].fd = fd;
	pfd[1].fd = STDIN_FILENO;
	pfd[0].events = pfd[1].events = POLLIN;
	for (;;) {
		ssize_t n;

		if (poll(pfd, 2, -1) < 0)
			return fail("poll");
		if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			n = pass(fd, STDOUT_FILENO);
			if (n < 0)
				return fail(path);
			if (!n)
				return 0;	/* the instance stopped */
		}
		if (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			n = pass(STDIN_FILENO, fd);
			if (n < 0)
				return fail(path);
			if (!n)
				return 0;
		}
	}
}

static int parse_long(const char *s, long *v)
{
	char *end;

	*v = strtol(s, &end, 0);
	return !*s || *end || *v < 0;
}

static int parse_flags(const char *s, unsigned long *v)
{
	char *end;

	errno = 0;
	*v = strtoul(s, &end, 0);
	return !*s || *end || *s == '-' || errno;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "id", required_argument, NULL, 'i' },
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'r' },
		{ "cmdline", required_argument, NULL, 'c' },
		{ "debug", no_argument, NULL, 'd' },
		{ "force", no_argument, NULL, 'f' },
		{ "count", required_argument, NULL, 'n' },
		{ "size", required_argument, NULL, 's' },
		{ "wait", no_argument, NULL, 'w' },
		{ "timeout", required_argument, NULL, 't' },
		{ "name", required_argument, NULL, 'N' },
		{ "state", required_argument, NULL, 'S' },
		{ "flags", required_argument, NULL, 'F' },
		{ NULL, 0, NULL, 0 },
	};
	struct args a = { .id = -1, .count = -1, .size = -1, .timeout = -1 };
	unsigned long flags;
	const char *verb;
	int opt, bad = 0;

	if (argc < 2)
		return usage();
	verb = argv[1];
	optind = 2;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'i':
			bad |= parse_long(optarg, &a.id);
			break;
		case 'k':
			a.kernel = optarg;
			break;
		case 'r':
			a.initrd = optarg;
			break;
		case 'c':
			a.cmdline = optarg;
			break;
		case 'd':
			/* The kernel logs where it places every segment. */
			a.debug = KEXEC_FILE_DEBUG;
			break;
		case 'f':
			a.force = 1;
			break;
		case 'n':
			bad |= parse_long(optarg, &a.count) || !a.count;
			break;
		case 's':
			bad |= parse_long(optarg, &a.size);
			break;
		case 'w':
			a.wait = 1;
			break;
		case 't':
			bad |= parse_long(optarg, &a.timeout);
			break;
		case 'N':
			a.name = optarg;
			break;
		case 'S':
			a.state = optarg;
			break;
		case 'F':
			bad |= parse_flags(optarg, &a.flags);
			break;
		default:
			return usage();
		}
	}
	if (bad || optind != argc)
		return usage();
	if (a.count < 0)
		a.count = !strcmp(verb, "ping") ? 3 : 1;
	if (a.timeout < 0)
		a.timeout = 10;

	if (!strcmp(verb, "recv"))
		return do_recv(&a);
	if (!strcmp(verb, "wait"))
		return a.name && a.state ? do_wait(&a) : usage();
	if (!strcmp(verb, "kexec"))
		return a.id < 0 ? do_kexec(&a) : usage();
	if (!strcmp(verb, "console"))
		return a.id > 0 ? do_console(&a) : usage();
	if (a.id < 0)
		return usage();
	flags = a.id ? KEXEC_MULTIKERNEL | KEXEC_MK_ID((unsigned long)a.id) : 0;
	if (!strcmp(verb, "load"))
		return do_load(&a, flags);
	if (a.kernel || a.initrd || a.cmdline || a.debug || a.flags)
		return usage();
	if (!strcmp(verb, "unload")) {
		if (syscall(SYS_kexec_file_load, -1, -1, 0, NULL,
			    flags | KEXEC_FILE_UNLOAD))
			return fail("unload");
		return 0;
	}
	if (!strcmp(verb, "exec"))
		return do_reboot_cmd(&a, LINUX_REBOOT_CMD_MULTIKERNEL, "exec");
	if (!strcmp(verb, "halt"))
		return do_reboot_cmd(&a, a.force ?
				     LINUX_REBOOT_CMD_MULTIKERNEL_HALT_FORCE :
				     LINUX_REBOOT_CMD_MULTIKERNEL_HALT, "halt");
	if (a.size < 0)
		a.size = 16;
	if (!strcmp(verb, "ping"))
		return do_ping(&a);
	if (!strcmp(verb, "send"))
		return do_send(&a);
	return usage();
}
