// SPDX-License-Identifier: GPL-2.0
/*
 * mkctl: load, unload and start multikernel instances from the guest shell.
 *
 *   mkctl load --id N --kernel FILE [--initrd FILE] [--cmdline STR] [--debug]
 *   mkctl unload --id N
 *   mkctl exec --id N
 *
 * load and unload with --id 0 work on this kernel's own kexec image (plain
 * kexec_file_load), as /proc/kimage lists it with MK_ID 0.
 *
 * On failure it prints the errno name and message and exits 1; usage
 * errors exit 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
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

struct multikernel_boot_args {
	int mk_id;
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
		"       mkctl unload --id N\n"
		"       (--id 0: this kernel's own kexec image)\n"
		"       mkctl exec --id N\n");
	return 2;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "id", required_argument, NULL, 'i' },
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'r' },
		{ "cmdline", required_argument, NULL, 'c' },
		{ "debug", no_argument, NULL, 'd' },
		{ NULL, 0, NULL, 0 },
	};
	const char *kernel = NULL, *initrd = NULL, *cmdline = NULL, *verb;
	unsigned long flags, debug = 0;
	long id = -1;
	char *end;
	int opt;

	if (argc < 2)
		return usage();
	verb = argv[1];
	optind = 2;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'i':
			id = strtol(optarg, &end, 0);
			if (*end || id < 0)
				return usage();
			break;
		case 'k':
			kernel = optarg;
			break;
		case 'r':
			initrd = optarg;
			break;
		case 'c':
			cmdline = optarg;
			break;
		case 'd':
			/* The kernel logs where it places every segment. */
			debug = KEXEC_FILE_DEBUG;
			break;
		default:
			return usage();
		}
	}
	if (optind != argc || id < 0)
		return usage();
	flags = id ? KEXEC_MULTIKERNEL | KEXEC_MK_ID((unsigned long)id) : 0;

	if (!strcmp(verb, "load")) {
		int kfd, ifd = -1;

		if (!kernel)
			return usage();
		flags |= debug;
		kfd = open(kernel, O_RDONLY | O_CLOEXEC);
		if (kfd < 0)
			return fail(kernel);
		if (initrd) {
			ifd = open(initrd, O_RDONLY | O_CLOEXEC);
			if (ifd < 0)
				return fail(initrd);
		} else {
			flags |= KEXEC_FILE_NO_INITRAMFS;
		}
		if (syscall(SYS_kexec_file_load, kfd, ifd,
			    cmdline ? strlen(cmdline) + 1 : 0, cmdline, flags))
			return fail("load");
		return 0;
	}
	if (!strcmp(verb, "unload")) {
		if (kernel || initrd || cmdline || debug)
			return usage();
		if (syscall(SYS_kexec_file_load, -1, -1, 0, NULL,
			    flags | KEXEC_FILE_UNLOAD))
			return fail("unload");
		return 0;
	}
	if (!strcmp(verb, "exec")) {
		struct multikernel_boot_args args = { .mk_id = (int)id };

		if (kernel || initrd || cmdline || debug)
			return usage();
		if (syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
			    LINUX_REBOOT_CMD_MULTIKERNEL, &args))
			return fail("exec");
		return 0;
	}
	return usage();
}
