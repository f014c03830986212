/* probe.c - tries one door from inside a sandbox and prints what happened,
 * as "NAME=RESULT" lines (RESULT is OK, or the errno name of the failure).
 * Built static and unsanitised; run as `probe DOOR [ARGS]`.  The escape
 * suite (test_escape.c) reads the lines. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <termios.h>
#include <unistd.h>

static const char *ename(int e)
{
	switch (e) {
	case 0: return "OK";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EACCES: return "EACCES";
	case ENOSYS: return "ENOSYS";
	case EINVAL: return "EINVAL";
	case EROFS: return "EROFS";
	case ECONNREFUSED: return "ECONNREFUSED";
	case ENETUNREACH: return "ENETUNREACH";
	case ESRCH: return "ESRCH";
	case EBADF: return "EBADF";
	case ENOTTY: return "ENOTTY";
	case EAGAIN: return "EAGAIN";
	case ENOSPC: return "ENOSPC";
	case ENOMEM: return "ENOMEM";
	case EFBIG: return "EFBIG";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case EXDEV: return "EXDEV";
	case ENOTDIR: return "ENOTDIR";
	case EIO: return "EIO";
	default: return "EOTHER";
	}
}

static int report(const char *name, long rc)
{
	printf("%s=%s\n", name, rc < 0 ? ename(errno) : "OK");
	return 0;
}

static int do_ptrace(void)
{
	return report("ptrace", ptrace(PTRACE_TRACEME, 0, NULL, NULL));
}

static int do_vm_readv(void)
{
	char a[8] = "x", b[8];
	struct iovec l = { b, 1 }, r = { a, 1 };

	return report("process_vm_readv",
		      syscall(SYS_process_vm_readv, getppid() > 0 ? 1 : 1, &l, 1, &r, 1, 0));
}

/* i386 system call through int 0x80: getpid is 20 there. */
static int do_int80(void)
{
	long rc;

	__asm__ volatile("int $0x80" : "=a"(rc) : "a"(20L) : "memory");
	if (rc < 0) {
		errno = (int)-rc;
		return report("int80", -1);
	}
	return report("int80", 0);
}

/* x32 system call: getpid with the x32 bit (0x40000000 | 39). */
static int do_x32(void)
{
	long rc;

	__asm__ volatile("syscall" : "=a"(rc) : "a"(0x40000000L | 39L)
			 : "rcx", "r11", "memory");
	if (rc < 0) {
		errno = (int)-rc;
		return report("x32", -1);
	}
	return report("x32", 0);
}

static int do_io_uring(void)
{
	struct io_uring_params p;

	memset(&p, 0, sizeof(p));
	return report("io_uring_setup", syscall(SYS_io_uring_setup, 4, &p));
}

static int do_keyctl(void)
{
	report("keyctl", syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID,
				 KEY_SPEC_SESSION_KEYRING, 0));
	return report("add_key", syscall(SYS_add_key, "user", "k", "v", 1,
					 KEY_SPEC_PROCESS_KEYRING));
}

static int do_bpf(void)
{
	char attr[128];

	memset(attr, 0, sizeof(attr));
	report("bpf", syscall(SYS_bpf, 0, attr, sizeof(attr)));
	report("perf_event_open", syscall(SYS_perf_event_open, attr, 0, -1, -1, 0));
	return report("userfaultfd", syscall(SYS_userfaultfd, 0));
}

static int do_unshare(void)
{
	report("unshare_user", unshare(CLONE_NEWUSER));
	report("unshare_ns", unshare(CLONE_NEWNS));
	report("setns", syscall(SYS_setns, 0, 0));
	return 0;
}

static int do_clone_ns(void)
{
	long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, 0);

	if (pid == 0)
		_exit(0);
	if (pid > 0)
		waitpid((pid_t)pid, NULL, 0);
	report("clone_newuser", pid);
	pid = syscall(SYS_clone3, NULL, 0);
	return report("clone3", pid);
}

static int do_mount(void)
{
	report("mount_tmpfs", mount("tmpfs", "/tmp", "tmpfs", 0, NULL));
	report("umount_proc", umount2("/proc", MNT_DETACH));
	report("chroot", chroot("/tmp"));
	return report("pivot_root", syscall(SYS_pivot_root, "/tmp", "/tmp"));
}

static int do_tiocsti(void)
{
	char c = 'x';
	int fd = open("/dev/tty", O_RDWR);

	report("open_tty", fd);
	/* on stdin as well: the ioctl itself must be refused */
	report("tiocsti", ioctl(fd >= 0 ? fd : 0, TIOCSTI, &c));
	/* high bits set: the kernel truncates to 32 bits, so must we */
	return report("tiocsti_hi", syscall(SYS_ioctl, fd >= 0 ? fd : 0,
					    0xffffffff00000000UL | TIOCSTI, &c));
}

static int do_personality(void)
{
	report("personality_query", personality(0xffffffff) == -1 ? -1 : 0);
	report("personality_linux", personality(PER_LINUX) == -1 ? -1 : 0);
	return report("personality_noaslr",
		      personality(PER_LINUX | ADDR_NO_RANDOMIZE) == -1 ? -1 : 0);
}

static int do_handle(void)
{
	char buf[256];

	memset(buf, 0, sizeof(buf));
	report("name_to_handle_at", syscall(SYS_name_to_handle_at, AT_FDCWD, "/",
					    buf, buf + 128, 0));
	return report("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD,
						   buf, O_RDONLY));
}

static int do_connect_unix(const char *path, int abstract)
{
	struct sockaddr_un a;
	socklen_t len;
	int s = socket(AF_UNIX, SOCK_STREAM, 0);

	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	if (abstract) {
		strncpy(a.sun_path + 1, path, sizeof(a.sun_path) - 2);
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(path));
	} else {
		strncpy(a.sun_path, path, sizeof(a.sun_path) - 1);
		len = sizeof(a);
	}
	return report(abstract ? "connect_abstract" : "connect_unix",
		      connect(s, (struct sockaddr *)&a, len));
}

static int do_connect_tcp(const char *port)
{
	struct sockaddr_in a;
	int s = socket(AF_INET, SOCK_STREAM, 0);

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)atoi(port));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return report("connect_tcp", connect(s, (struct sockaddr *)&a, sizeof(a)));
}

static int do_kill(const char *pid)
{
	return report("kill", kill((pid_t)atol(pid), 0));
}

/* Forks until the limit stops it; children sleep until killed. */
static int do_forkbomb(void)
{
	int n = 0;

	for (;;) {
		pid_t p = fork();

		if (p == 0) {
			pause();
			_exit(0);
		}
		if (p < 0)
			break;
		if (++n >= 100000)
			break;
	}
	printf("forks=%d errno=%s\n", n, ename(errno));
	fflush(stdout);
	return 1;
}

/* Touches memory until something stops it. */
static int do_memhog(void)
{
	size_t total = 0, chunk = 4 << 20;

	for (;;) {
		char *p = malloc(chunk);

		if (p == NULL)
			break;
		memset(p, 1, chunk);
		total += chunk;
		if (total >= ((size_t)8 << 30))
			break;
	}
	printf("allocated=%zu\n", total);
	fflush(stdout);
	return 3;
}

static int do_diskfill(const char *path)
{
	static char block[65536];
	size_t total = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	signal(SIGXFSZ, SIG_IGN);
	memset(block, 'd', sizeof(block));
	for (;;) {
		ssize_t w = write(fd, block, sizeof(block));

		if (w <= 0)
			break;
		total += (size_t)w;
	}
	printf("written=%zu errno=%s\n", total, ename(errno));
	fflush(stdout);
	return 4;
}

static int do_flood(void)
{
	static char block[65536];

	memset(block, 'f', sizeof(block));
	for (;;)
		if (write(1, block, sizeof(block)) < 0)
			return 5;
}

static int do_write(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);

	if (fd >= 0 && write(fd, "x", 1) != 1)
		fd = -1;
	return report("write", fd);
}

static int do_chmod(const char *path)
{
	return report("chmod", chmod(path, 0666));
}

static int do_unlink(const char *path)
{
	return report("unlink", unlink(path));
}

/* Prints this process's ids and capability sets. */
static int do_ids(void)
{
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");

	printf("uid=%d euid=%d gid=%d egid=%d\n", (int)getuid(), (int)geteuid(),
	       (int)getgid(), (int)getegid());
	{
		FILE *o = fopen("/proc/self/oom_score_adj", "r");
		int adj = 0;

		if (o != NULL && fscanf(o, "%d", &adj) == 1)
			printf("oom_score_adj=%d\n", adj);
		if (o != NULL)
			fclose(o);
	}
	while (f != NULL && fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "Cap", 3) == 0 || strncmp(line, "NoNewPrivs", 10) == 0 ||
		    strncmp(line, "Seccomp:", 8) == 0 || strncmp(line, "Groups", 6) == 0 ||
		    strncmp(line, "SigIgn", 6) == 0 || strncmp(line, "SigBlk", 6) == 0)
			fputs(line, stdout);
	return 0;
}

/* Lists open descriptors. */
static int do_fds(void)
{
	char path[64], target[256];
	int fd;

	for (fd = 0; fd < 1024; fd++) {
		ssize_t n;

		if (fcntl(fd, F_GETFD) < 0)
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		n = readlink(path, target, sizeof(target) - 1);
		target[n > 0 ? n : 0] = '\0';
		printf("fd %d %s\n", fd, target);
	}
	return 0;
}

/* Burns CPU until a limit stops it. */
static int do_spin(void)
{
	volatile unsigned long n = 0;

	for (;;)
		n++;
	return 0;
}

/* Sleeps in the background and the foreground, printing its pids. */
static int do_linger(void)
{
	pid_t p = fork();

	if (p == 0) {
		setsid();
		sleep(100);
		_exit(0);
	}
	printf("child=%d\n", (int)p);
	fflush(stdout);
	sleep(100);
	return 0;
}

int main(int argc, char **argv)
{
	const char *d = argc > 1 ? argv[1] : "";
	const char *a = argc > 2 ? argv[2] : "";

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(d, "ptrace") == 0) return do_ptrace();
	if (strcmp(d, "vm_readv") == 0) return do_vm_readv();
	if (strcmp(d, "int80") == 0) return do_int80();
	if (strcmp(d, "x32") == 0) return do_x32();
	if (strcmp(d, "io_uring") == 0) return do_io_uring();
	if (strcmp(d, "keyctl") == 0) return do_keyctl();
	if (strcmp(d, "bpf") == 0) return do_bpf();
	if (strcmp(d, "unshare") == 0) return do_unshare();
	if (strcmp(d, "clone_ns") == 0) return do_clone_ns();
	if (strcmp(d, "mount") == 0) return do_mount();
	if (strcmp(d, "tiocsti") == 0) return do_tiocsti();
	if (strcmp(d, "personality") == 0) return do_personality();
	if (strcmp(d, "handle") == 0) return do_handle();
	if (strcmp(d, "connect_unix") == 0) return do_connect_unix(a, 0);
	if (strcmp(d, "connect_abstract") == 0) return do_connect_unix(a, 1);
	if (strcmp(d, "connect_tcp") == 0) return do_connect_tcp(a);
	if (strcmp(d, "kill") == 0) return do_kill(a);
	if (strcmp(d, "forkbomb") == 0) return do_forkbomb();
	if (strcmp(d, "memhog") == 0) return do_memhog();
	if (strcmp(d, "diskfill") == 0) return do_diskfill(a);
	if (strcmp(d, "flood") == 0) return do_flood();
	if (strcmp(d, "write") == 0) return do_write(a);
	if (strcmp(d, "chmod") == 0) return do_chmod(a);
	if (strcmp(d, "unlink") == 0) return do_unlink(a);
	if (strcmp(d, "ids") == 0) return do_ids();
	if (strcmp(d, "fds") == 0) return do_fds();
	if (strcmp(d, "linger") == 0) return do_linger();
	if (strcmp(d, "spin") == 0) return do_spin();
	fprintf(stderr, "probe: unknown door \"%s\"\n", d);
	return 2;
}
