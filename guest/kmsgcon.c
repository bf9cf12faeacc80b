// SPDX-License-Identifier: GPL-2.0
/*
 * kmsgcon: copy every kernel log record to the QEMU debug console.
 *
 * The guest's serial console is shared with the shell, so the init lowers
 * its log level to keep command output clean.  This helper streams the full
 * kernel log, formatted like the console, to I/O port 0xe9 (QEMU's
 * isa-debugcon), where the harness watches it for crash signatures.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <unistd.h>

#define DEBUG_PORT 0xe9

static void put(const char *text, size_t len)
{
	for (size_t i = 0; i < len; i++)
		outb((unsigned char)text[i], DEBUG_PORT);
}

/* A record is "prio,seq,usec,flags;text\n" followed by " KEY=value" lines. */
static void emit(char *record, size_t len)
{
	char line[128];
	unsigned long long usec = 0;
	char *text = memchr(record, ';', len);
	char *end;
	int n;

	if (!text)
		return;
	text++;
	end = memchr(text, '\n', len - (size_t)(text - record));
	if (!end)
		end = record + len;
	if (sscanf(record, "%*u,%*u,%llu", &usec) != 1)
		usec = 0;
	n = snprintf(line, sizeof(line), "[%5llu.%06llu] ",
		     usec / 1000000, usec % 1000000);
	put(line, (size_t)n);
	put(text, (size_t)(end - text));
	put("\n", 1);
}

int main(void)
{
	static char record[8192];
	int fd;

	if (ioperm(DEBUG_PORT, 1, 1) != 0) {
		fprintf(stderr, "kmsgcon: no access to port 0x%x: %s\n",
			DEBUG_PORT, strerror(errno));
		return 1;
	}
	fd = open("/dev/kmsg", O_RDONLY);
	if (fd < 0) {
		fprintf(stderr, "kmsgcon: /dev/kmsg: %s\n", strerror(errno));
		return 1;
	}
	for (;;) {
		ssize_t got = read(fd, record, sizeof(record) - 1);

		if (got < 0) {
			/* EPIPE: records were overwritten; carry on from the oldest. */
			if (errno == EPIPE || errno == EINTR)
				continue;
			fprintf(stderr, "kmsgcon: read: %s\n", strerror(errno));
			return 1;
		}
		emit(record, (size_t)got);
	}
}
