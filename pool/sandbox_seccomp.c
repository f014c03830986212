/* sandbox_seccomp.c - the sandbox's seccomp filter: compiled once with
 * libseccomp in global_init, exported as classic BPF into memory, and
 * installed in each workload with seccomp(SECCOMP_SET_MODE_FILTER).
 *
 * The filter allows by default and denies, with EPERM (ENOSYS for clone3
 * so that libc falls back to clone), the system calls that reach the
 * kernel's riskiest code or reshape the sandbox: see deny_always below.
 * Any architecture other than the native one (i386 `int 0x80`, x32) gets
 * ENOSYS, so that a denied call cannot be reached through another ABI. */
#include "pool/sandbox_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Denied whatever their arguments. */
static const char *const deny_always[] = {
	/* looking into or steering other processes */
	"ptrace", "process_vm_readv", "process_vm_writev", "process_madvise",
	"pidfd_getfd", "kcmp",
	/* large kernel attack surface, not needed by commands */
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	"keyctl", "add_key", "request_key", "bpf", "perf_event_open",
	"userfaultfd", "lookup_dcookie", "syslog", "uselib", "vhangup",
	"quotactl", "quotactl_fd", "iopl", "ioperm",
	/* the machine itself */
	"kexec_load", "kexec_file_load", "init_module", "finit_module",
	"delete_module", "acct", "swapon", "swapoff", "reboot",
	"settimeofday", "clock_settime", "clock_adjtime",
	/* the file system layout and the namespaces */
	"mount", "umount2", "pivot_root", "chroot", "move_mount",
	"open_tree", "fsopen", "fsmount", "fsconfig", "fspick",
	"mount_setattr", "unshare", "setns",
	"open_by_handle_at", "name_to_handle_at",
};

/* Newer than libseccomp 2.5.4 knows by name; the number is the same on
 * every architecture for system calls added after 5.1. */
static const struct { const char *name; int nr; } deny_by_number[] = {
	{ "open_tree_attr", 467 },
};

/* clone flags that create namespaces (clone3 is ENOSYS altogether). */
static const uint64_t clone_ns_flags[] = {
	CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER,
	CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP,
};

static struct sock_filter *filter_insns;
static unsigned short filter_len;

static int deny(scmp_filter_ctx ctx, int nr, unsigned n,
		const struct scmp_arg_cmp *cmp)
{
	return seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(EPERM), nr, n, cmp);
}

static int add_named_rules(scmp_filter_ctx ctx, struct shoal_error *err)
{
	size_t i;

	for (i = 0; i < sizeof(deny_always) / sizeof(deny_always[0]); i++) {
		int nr = seccomp_syscall_resolve_name(deny_always[i]);
		int rc;

		if (nr == __NR_SCMP_ERROR)
			continue;	/* not on this architecture */
		rc = deny(ctx, nr, 0, NULL);
		if (rc < 0)
			return shoal_error_set(err, SHOAL_ESYS,
					       "seccomp rule for %s: %s",
					       deny_always[i], strerror(-rc));
	}
	for (i = 0; i < sizeof(deny_by_number) / sizeof(deny_by_number[0]); i++) {
		if (seccomp_syscall_resolve_name(deny_by_number[i].name) !=
		    __NR_SCMP_ERROR)
			continue;
		/* best effort: an older kernel simply lacks it */
		(void)deny(ctx, deny_by_number[i].nr, 0, NULL);
	}
	return SHOAL_OK;
}

/* clone with any namespace flag: one masked compare per flag (the rules
 * of one system call are ORed). */
static int add_clone_rules(scmp_filter_ctx ctx)
{
	size_t i;
	int rc;

	for (i = 0; i < sizeof(clone_ns_flags) / sizeof(clone_ns_flags[0]); i++) {
		struct scmp_arg_cmp c = SCMP_A0(SCMP_CMP_MASKED_EQ,
						clone_ns_flags[i],
						clone_ns_flags[i]);

		rc = deny(ctx, SCMP_SYS(clone), 1, &c);
		if (rc < 0)
			return rc;
	}
	return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
}

/* TIOCSTI (push bytes into a terminal's input) and TIOCLINUX: the kernel
 * reads the request as 32 bits, so compare only the low 32. */
static int add_ioctl_rules(scmp_filter_ctx ctx)
{
	static const unsigned long reqs[] = { TIOCSTI, TIOCLINUX };
	size_t i;
	int rc;

	for (i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		struct scmp_arg_cmp c = SCMP_A1(SCMP_CMP_MASKED_EQ,
						0xffffffffu, reqs[i]);

		rc = deny(ctx, SCMP_SYS(ioctl), 1, &c);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* personality: only PER_LINUX (0) and the query 0xffffffff are allowed.
 * libseccomp cannot compare one argument twice in a rule, so "neither
 * all-zero nor all-one in the low 32 bits" is written as "some bit k
 * differs from bit 0": two masked compares per k. */
static int add_personality_rules(scmp_filter_ctx ctx)
{
	int k, rc;

	for (k = 1; k < 32; k++) {
		uint64_t m = 1u | (1ull << k);
		struct scmp_arg_cmp a = SCMP_A0(SCMP_CMP_MASKED_EQ, m, 1ull << k);
		struct scmp_arg_cmp b = SCMP_A0(SCMP_CMP_MASKED_EQ, m, 1u);

		rc = deny(ctx, SCMP_SYS(personality), 1, &a);
		if (rc == 0)
			rc = deny(ctx, SCMP_SYS(personality), 1, &b);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Exports the compiled filter into memory through a memfd (libseccomp
 * 2.5 has no in-memory export). */
static int export_filter(scmp_filter_ctx ctx, struct shoal_error *err)
{
	struct sock_filter *insns = NULL;
	off_t size;
	ssize_t got;
	int fd, rc;

	fd = memfd_create("shoal-seccomp", MFD_CLOEXEC);
	if (fd < 0)
		return shoal_error_errno(err, SHOAL_ESYS, "memfd_create");
	rc = seccomp_export_bpf(ctx, fd);
	if (rc < 0) {
		close(fd);
		return shoal_error_set(err, SHOAL_ESYS, "seccomp_export_bpf: %s",
				       strerror(-rc));
	}
	size = lseek(fd, 0, SEEK_END);
	if (size <= 0 || size % (off_t)sizeof(struct sock_filter) != 0 ||
	    size / (off_t)sizeof(struct sock_filter) > BPF_MAXINSNS) {
		close(fd);
		return shoal_error_set(err, SHOAL_ESYS,
				       "seccomp filter has a bad size (%lld)",
				       (long long)size);
	}
	insns = malloc((size_t)size);
	got = insns == NULL ? -1 : pread(fd, insns, (size_t)size, 0);
	close(fd);
	if (got != (ssize_t)size) {
		free(insns);
		return shoal_error_set(err, SHOAL_ESYS, "reading the seccomp filter");
	}
	free(filter_insns);
	filter_insns = insns;
	filter_len = (unsigned short)(size / (off_t)sizeof(struct sock_filter));
	return SHOAL_OK;
}

int sb_seccomp_build(struct shoal_error *err)
{
	scmp_filter_ctx ctx;
	int rc;

	if (filter_insns != NULL)
		return SHOAL_OK;
	ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (ctx == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "seccomp_init failed");
	rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_ERRNO(ENOSYS));
	/* NO_NEW_PRIVS is set by hand before installing */
	if (rc == 0)
		rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
	if (rc < 0) {
		rc = shoal_error_set(err, SHOAL_ESYS, "seccomp attributes: %s",
				     strerror(-rc));
		goto out;
	}
	rc = add_named_rules(ctx, err);
	if (rc != SHOAL_OK)
		goto out;
	rc = add_clone_rules(ctx);
	if (rc == 0)
		rc = add_ioctl_rules(ctx);
	if (rc == 0)
		rc = add_personality_rules(ctx);
	if (rc < 0) {
		rc = shoal_error_set(err, SHOAL_ESYS, "seccomp argument rules: %s",
				     strerror(-rc));
		goto out;
	}
	rc = export_filter(ctx, err);
out:
	seccomp_release(ctx);
	return rc;
}

int sb_seccomp_install(void)
{
	struct sock_fprog prog;

	if (filter_insns == NULL)
		return -EINVAL;
	prog.len = filter_len;
	prog.filter = filter_insns;
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
		return -errno;
	return 0;
}
