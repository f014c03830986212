/* sandbox_init.c - the sandbox's pid 1 (the "init") and the workload's last
 * steps before execve.  Runs only in children of the worker: no malloc,
 * no stdio, _exit only; every buffer is static or on the stack.
 *
 * The init's life:
 *
 *   clone ──▶ join the job's cgroups ──▶ close inherited fds ──▶ wait for
 *   GO (the worker has written the uid/gid maps) ──▶ become the sandbox
 *   user; unshare mount, ipc, uts, cgroup (and net) namespaces;
 *   non-dumpable; wipe the worker's argv/environ copy ──▶ build the file
 *   system (sandbox_mounts.c) ──▶ stage /workspace ──▶ drop every
 *   capability, NO_NEW_PRIVS, seccomp (inherited by all it starts) ──▶
 *     job:     run the command ──▶ collect `outputs` ──▶ DONE ──▶ exit
 *     session: serve operations (EXEC, WRITE, READ, LIST, REMOVE,
 *              SPAWN) until the worker closes the socket
 *
 * Running a command: spawn the workload, relay its stdout/stderr as
 * frames, reap every child; when the workload exits, kill what is left,
 * drain the pipes, reap everything, report EXIT.
 *
 * Any failure before the workload runs is reported as SB_F_FAIL and the
 * init exits; the worker turns it into SHOAL_STATUS_ERROR.  The worker
 * enforces a job's timeout and output cap by killing the init, which
 * kills the whole pid namespace (a session's, by asking for SB_C_KILL).
 *
 * A session may also keep processes across operations: SPAWN starts one
 * (an MCP stdio server) and hands its pipes to the worker.  Each leads
 * its own session (setsid), which no other process can join, so when a
 * command ends "everything else dies" becomes "everything outside the
 * spawned processes' sessions dies" (kill_rest). */
#include "pool/sandbox_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

/* The workload runs on this stack until execve (CLONE_VM | CLONE_VFORK:
 * no second copy of the worker's page tables). */
#define WL_STACK_SIZE (256 * 1024)
static char wl_stack[WL_STACK_SIZE] __attribute__((aligned(64)));

/* Relay buffer: static, the init is single-threaded. */
static char frame_buf[SB_PAYLOAD_MAX];

/* What the workload child needs; shared with the init (CLONE_VM). */
struct wl_args {
	const struct sb_launch *l;
	int in_fd, out_fd, err_fd;
	volatile int exec_errno;
};

/* Instrumented code on a foreign stack is avoided in the vfork child. */
#define SB_CHILD __attribute__((no_sanitize("address", "undefined")))

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- frames to the worker ---- */

int sb_send_frame(int sock, uint32_t type, uint32_t arg, const void *p,
		  size_t n)
{
	struct sb_hdr h;
	struct iovec iov[2];
	struct msghdr m;

	h.type = type;
	h.arg = arg;
	iov[0].iov_base = &h;
	iov[0].iov_len = sizeof(h);
	iov[1].iov_base = (void *)p;
	iov[1].iov_len = n;
	memset(&m, 0, sizeof(m));
	m.msg_iov = iov;
	m.msg_iovlen = n > 0 ? 2 : 1;
	for (;;) {
		if (sendmsg(sock, &m, MSG_NOSIGNAL) >= 0)
			return 0;
		if (errno != EINTR)
			_exit(3);	/* the worker is gone */
	}
}

/* One frame carrying descriptors (SCM_RIGHTS). */
static void send_frame_fds(int sock, uint32_t type, uint32_t arg,
			   const void *p, size_t n, const int *fds, size_t nfds)
{
	static union {
		char buf[CMSG_SPACE(sizeof(int) * SB_SPAWN_FDS)];
		struct cmsghdr align;
	} ctl;
	struct sb_hdr h;
	struct iovec iov[2];
	struct msghdr m;
	struct cmsghdr *c;

	h.type = type;
	h.arg = arg;
	iov[0].iov_base = &h;
	iov[0].iov_len = sizeof(h);
	iov[1].iov_base = (void *)p;
	iov[1].iov_len = n;
	memset(&m, 0, sizeof(m));
	memset(&ctl, 0, sizeof(ctl));
	m.msg_iov = iov;
	m.msg_iovlen = n > 0 ? 2 : 1;
	m.msg_control = ctl.buf;
	m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
	c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
	memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	for (;;) {
		if (sendmsg(sock, &m, MSG_NOSIGNAL) >= 0)
			return;
		if (errno != EINTR)
			_exit(3);	/* the worker is gone */
	}
}

/* A FAIL frame: what failed (kind, errno) and what was being done. */
static void send_fail(int sock, uint32_t kind, int err, const char *what)
{
	char buf[sizeof(struct sb_fail) + 512];
	struct sb_fail f;
	size_t n = strnlen(what, 511);

	f.kind = kind;
	f.err = err;
	memcpy(buf, &f, sizeof(f));
	memcpy(buf + sizeof(f), what, n);
	sb_send_frame(sock, SB_F_FAIL, 0, buf, sizeof(f) + n);
}

static _Noreturn void fail_exit(int sock, uint32_t kind, int err,
				const char *what)
{
	send_fail(sock, kind, err, what);
	sb_send_frame(sock, SB_F_DONE, 0, NULL, 0);
	_exit(1);
}

/* ---- first steps after clone ---- */

/* Keeps only the socket (as fd >= 3) and /dev/null on 0, 1, 2. */
static int isolate_fds(int sock)
{
	int fd;

	if (sock < 3) {
		fd = fcntl(sock, F_DUPFD_CLOEXEC, 3);
		if (fd < 0)
			_exit(2);
		sock = fd;
	}
	if (close_range(0, (unsigned)sock - 1, 0) != 0 ||
	    close_range((unsigned)sock + 1, ~0u, 0) != 0)
		_exit(2);
	fd = open("/dev/null", O_RDWR);
	if (fd != 0 || dup2(0, 1) != 1 || dup2(0, 2) != 2)
		_exit(2);
	return sock;
}

static void wait_go(int sock)
{
	struct sb_hdr h;
	ssize_t n;

	do
		n = read(sock, &h, sizeof(h));
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(h) || h.type != SB_C_GO)
		_exit(1);	/* the worker gave up on us */
}

/* The worker's argv and environ strings are in our copy of its stack;
 * /proc/1/cmdline would show them to the workload. */
static void wipe_worker_args(const struct sb_launch *l)
{
	static const char name[] = "shoal-sandbox-init";

	if (l->env_start < l->env_end && l->env_end - l->env_start < (1u << 20))
		memset((void *)l->env_start, 0, l->env_end - l->env_start);
	if (l->arg_start < l->arg_end && l->arg_end - l->arg_start < (1u << 20)) {
		size_t n = l->arg_end - l->arg_start;

		memset((void *)l->arg_start, 0, n);
		memcpy((void *)l->arg_start, name, n > sizeof(name) ? sizeof(name) : n - 1);
	}
	prctl(PR_SET_NAME, "shoal-init", 0, 0, 0);
}

/* One uid (SB_UID) is mapped.  A non-root worker's uid maps to it, so we
 * already are it; a root worker's child is still the unmapped outer root
 * and switches.  Capabilities in the new user namespace survive the
 * switch (the namespace has no uid 0 to lose them to). */
static int become_sandbox_user(void)
{
	if (getuid() == SB_UID && getgid() == SB_GID)
		return 0;
	if (setgroups(0, NULL) != 0)
		return -1;
	if (setresgid(SB_GID, SB_GID, SB_GID) != 0)
		return -1;
	return setresuid(SB_UID, SB_UID, SB_UID);
}

static void loopback_up(void)
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (s < 0)
		return;
	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.ifr_name, "lo", 3);
	ifr.ifr_flags = IFF_UP | IFF_RUNNING;
	(void)ioctl(s, SIOCSIFFLAGS, &ifr);
	close(s);
}

/* Ignored signals stay ignored across execve: whatever the worker ignores
 * (SIGPIPE, typically) is reset to default here, once, so that workloads
 * see the default dispositions.  /proc/self/status lists them (SigIgn),
 * which is cheaper than asking for all 64.  The init itself blocks every
 * signal, so the change does not reach it. */
static void reset_ignored_signals(void)
{
	char buf[4096], *p;
	unsigned long long ign;
	struct sigaction sa;
	ssize_t n;
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC), sig;

	n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	p = strstr(buf, "SigIgn:");
	if (p == NULL)
		return;
	ign = strtoull(p + 7, NULL, 16);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (sig = 1; sig <= 64; sig++)
		if (ign & (1ull << (sig - 1)))
			(void)sigaction(sig, &sa, NULL);
}

/* Under memory pressure the sandbox goes first: the init and, inherited,
 * every process in it.  Written while we may still open our own /proc
 * files: changing uid (a root worker's init) or PR_SET_DUMPABLE 0 hands
 * them to root. */
static void prefer_for_oom(void)
{
	int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);

	if (fd >= 0) {
		(void)write(fd, "1000", 4);
		close(fd);
	}
}

static void setup_namespaces(const struct sb_launch *l, int sock)
{
	char what[600];
	int rc;

	prefer_for_oom();
	if (become_sandbox_user() != 0)
		fail_exit(sock, SB_FAIL_SETUP, errno, "become the sandbox user");
	/* The worker cloned us with new user and pid namespaces only; the
	 * others are made here, so that their cost (a network namespace is
	 * most of a millisecond) is paid in parallel, not in the worker's
	 * thread.  The cgroup namespace's root is the job's cgroup, which we
	 * joined already. */
	if (unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP |
		    (l->network_host ? 0 : CLONE_NEWNET)) != 0)
		fail_exit(sock, SB_FAIL_SETUP, errno, "unshare the mount, ipc, uts, "
			  "cgroup and network namespaces");
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	wipe_worker_args(l);
	rc = sb_mounts_build(l, what, sizeof(what));
	if (rc != 0)
		fail_exit(sock, SB_FAIL_SETUP, -rc, what);
	(void)sethostname("sandbox", 7);
	if (!l->network_host)
		loopback_up();
}

/* ---- staging /workspace ---- */

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = ENOSPC;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* mkdir -p for the folders of a relative name, under dirfd ws. */
static int make_dirs_at(int ws, const char *name)
{
	char buf[PATH_MAX];
	char *s;
	size_t n = strlen(name);

	if (n >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, name, n + 1);
	for (s = strchr(buf, '/'); s != NULL; s = strchr(s + 1, '/')) {
		*s = '\0';
		if (mkdirat(ws, buf, 0755) != 0 && errno != EEXIST)
			return -1;
		*s = '/';
	}
	return 0;
}

static int stage_file(const struct sb_launch *l, int ws, const char *name,
		      const void *data, size_t len, uint32_t mode)
{
	char abs[PATH_MAX];
	int fd;

	if (make_dirs_at(ws, name) != 0)
		return -1;
	fd = openat(ws, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		    0600);
	if (fd < 0)
		return -1;
	if (write_all(fd, data, len) != 0 || fchmod(fd, (mode_t)(mode & 0777)) != 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	close(fd);
	if (!l->native || (mode & 0222) != 0)
		return 0;
	/* read-only: a read-only bind of the file onto itself, so that the
	 * workload (the same uid) can neither write nor chmod it */
	if ((size_t)snprintf(abs, sizeof(abs), "%s/%s", l->workspace, name) >=
	    sizeof(abs)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (sb_mounts_make_readonly(abs) != 0)
		return -1;
	return 0;
}

static void stage_workspace(const struct sb_launch *l, int sock)
{
	const struct shoal_sandbox_spec *s = l->spec;
	char what[PATH_MAX + 16];
	size_t i;
	int ws;

	ws = open(l->workspace, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ws < 0 || chdir(l->workspace) != 0)
		fail_exit(sock, SB_FAIL_SETUP, errno, "open the workspace");
	if (s->input != NULL &&
	    stage_file(l, ws, "input", s->input, s->input_len, 0444) != 0)
		fail_exit(sock, SB_FAIL_SETUP, errno, "stage input");
	for (i = 0; i < s->nfiles; i++) {
		const struct shoal_sandbox_file *f = &s->files[i];

		if (stage_file(l, ws, f->name, f->data, f->len, f->mode) != 0) {
			snprintf(what, sizeof(what), "stage %s", f->name);
			fail_exit(sock, SB_FAIL_SETUP, errno, what);
		}
	}
	close(ws);
}

/* ---- the workload: last steps before execve (vfork child) ---- */

static int drop_capabilities(void)
{
	struct __user_cap_header_struct hdr;
	struct __user_cap_data_struct data[2];
	int cap;

	/* no uid 0 magic even if one appeared; locked */
	if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED |
		  SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED |
		  SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
		  SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED, 0, 0, 0) != 0)
		return -1;
	for (cap = 0; cap < 64; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno == EINVAL)
			break;
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
		return -1;
	memset(&hdr, 0, sizeof(hdr));
	memset(data, 0, sizeof(data));
	hdr.version = _LINUX_CAPABILITY_VERSION_3;
	return (int)syscall(SYS_capset, &hdr, data);
}

/* The workload starts with every signal unblocked.  Dispositions need
 * nothing here: execve resets handled signals, and the init has reset the
 * ignored ones (reset_ignored_signals). */
SB_CHILD static void unblock_signals(void)
{
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

SB_CHILD static int setup_stdio(const struct wl_args *w)
{
	if (dup2(w->in_fd, 0) != 0 || dup2(w->out_fd, 1) != 1 ||
	    dup2(w->err_fd, 2) != 2)
		return -1;
	return close_range(3, ~0u, 0);
}

SB_CHILD static int apply_rlimits(const struct sb_launch *l)
{
	size_t i;

	for (i = 0; i < l->nrlims; i++)
		if (setrlimit((__rlimit_resource_t)l->rlims[i].resource,
			      &l->rlims[i].lim) != 0)
			return -1;
	return 0;
}

/* execve argv[0], searched in the spec's PATH (not the worker's). */
SB_CHILD static int exec_workload(const struct sb_launch *l)
{
	const char *file = l->argv[0], *p = l->path;
	char buf[PATH_MAX];
	size_t fl = strlen(file);
	int saw_eacces = 0;

	if (strchr(file, '/') != NULL) {
		execve(file, l->argv, l->envp);
		return errno;
	}
	while (*p != '\0' || p == l->path) {
		const char *end = strchr(p, ':');
		size_t dl = end != NULL ? (size_t)(end - p) : strlen(p);

		if (dl == 0) {
			buf[0] = '.';
			dl = 1;
		} else if (dl < sizeof(buf)) {
			memcpy(buf, p, dl);
		}
		if (dl + 1 + fl < sizeof(buf)) {
			buf[dl] = '/';
			memcpy(buf + dl + 1, file, fl + 1);
			execve(buf, l->argv, l->envp);
			if (errno == EACCES)
				saw_eacces = 1;
			else if (errno != ENOENT && errno != ENOTDIR &&
				 errno != ELOOP && errno != ENAMETOOLONG)
				return errno;
		}
		if (end == NULL)
			break;
		p = end + 1;
	}
	return saw_eacces ? EACCES : ENOENT;
}

SB_CHILD static int workload_main(void *arg)
{
	struct wl_args *w = arg;
	const struct sb_launch *l = w->l;
	int e;

	unblock_signals();
	if (setsid() < 0 || setup_stdio(w) != 0 || apply_rlimits(l) != 0)
		goto fail;
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
		goto fail;
	(void)personality(PER_LINUX);
	/* native: capabilities, NO_NEW_PRIVS and seccomp come from the init
	 * (confine_init), inherited */
	if (!l->native && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		goto fail;
	if (chdir(l->workspace) != 0)
		goto fail;
	e = exec_workload(l);
	w->exec_errno = e ? e : ENOENT;
	_exit(127);
fail:
	w->exec_errno = errno ? -errno : -EINVAL;	/* negative: set-up */
	_exit(127);
}

/* ---- spawned processes (sessions) ----
 *
 * The session ids of the processes SPAWN started (each is its session's
 * leader, so its pid is its session id).  A process can only ever join a
 * session by creating it, so no command's process can hide in one. */
static pid_t kept[SB_SPAWN_MAX];
static int nkept;

static void forget_kept(pid_t pid)
{
	int i;

	for (i = 0; i < nkept; i++)
		if (kept[i] == pid) {
			kept[i] = kept[--nkept];
			return;
		}
}

static int is_kept(pid_t sid)
{
	int i;

	for (i = 0; i < nkept; i++)
		if (kept[i] == sid)
			return 1;
	return 0;
}

/* Reads the state and session id of pid from /proc/PID/stat; 0 or -1. */
static int proc_state(pid_t pid, char *state, pid_t *sid)
{
	static const char digits[] = "0123456789";
	char path[32], buf[1024], *p;
	long v[3];
	ssize_t n;
	int fd, i, k = 0;

	memcpy(path, "/proc/", 6);
	for (i = 1000000000; i > 1 && pid / i == 0; i /= 10)
		;
	for (k = 6; i >= 1; i /= 10)
		path[k++] = digits[(pid / i) % 10];
	memcpy(path + k, "/stat", 6);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	p = strrchr(buf, ')');	/* the name may hold anything but ")" last */
	if (p == NULL || p[1] != ' ' || p[2] == '\0')
		return -1;
	*state = p[2];
	p += 3;
	for (i = 0; i < 3; i++) {	/* ppid, pgrp, session */
		char *end;

		v[i] = strtol(p, &end, 10);
		if (end == p)
			return -1;
		p = end;
	}
	*sid = (pid_t)v[2];
	return 0;
}

/* SIGKILLs every process of the pid namespace that is neither us, nor a
 * zombie, nor in a kept session; returns how many were alive. */
static int kill_unkept(void)
{
	static char dents[8192] __attribute__((aligned(8)));
	int fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC), alive = 0;
	long n;

	if (fd < 0)
		return 0;
	while ((n = syscall(SYS_getdents64, fd, dents, sizeof(dents))) > 0) {
		long off = 0;

		while (off < n) {
			const struct dirent64 *d = (const void *)(dents + off);
			char *end, state;
			long pid = strtol(d->d_name, &end, 10);
			pid_t sid;

			off += d->d_reclen;
			if (*end != '\0' || end == d->d_name || pid <= 1)
				continue;
			if (proc_state((pid_t)pid, &state, &sid) != 0 ||
			    state == 'Z' || state == 'X' || is_kept(sid))
				continue;
			(void)kill((pid_t)pid, SIGKILL);
			alive++;
		}
	}
	close(fd);
	return alive;
}

/* ---- relaying and reaping ---- */

struct relay {
	int sock;
	int watch_sock;		/* session: a KILL may come while it runs */
	int out_r, err_r;	/* -1 after EOF */
	int sigfd;
	pid_t main_pid;
	int main_done;
	int wstatus;
	struct rusage ru;
	int64_t start_us, end_us;
};

static void relay_pipe(struct relay *r, int *fd, uint32_t type)
{
	ssize_t n = read(*fd, frame_buf, sizeof(frame_buf));

	if (n > 0) {
		sb_send_frame(r->sock, type, 0, frame_buf, (size_t)n);
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	close(*fd);
	*fd = -1;
}

static void reap(struct relay *r, int block)
{
	struct rusage ru;
	int st;
	pid_t p;

	for (;;) {
		p = wait4(-1, &st, block ? 0 : WNOHANG, &ru);
		if (p < 0 && errno == EINTR)
			continue;
		if (p <= 0)
			return;
		forget_kept(p);
		if (p == r->main_pid && !r->main_done) {
			r->main_done = 1;
			r->wstatus = st;
			r->ru = ru;
			r->end_us = mono_us();
		}
	}
}

/* The workload has exited: nothing else in the sandbox may outlive it
 * (or write to the workspace while outputs are collected), except what
 * SPAWN started. */
static void kill_rest(const struct sb_launch *l, pid_t main_pid)
{
	if (!l->native)
		(void)kill(-main_pid, SIGKILL);	/* its process group */
	else if (nkept == 0)
		(void)kill(-1, SIGKILL);	/* pid 1: everyone but us */
	else
		(void)kill_unkept();
}

/* A session's command while its command runs: only KILL is expected.
 * Returns 1 for KILL. */
static int take_kill(struct relay *r)
{
	struct sb_hdr h;
	ssize_t n = recv(r->sock, &h, sizeof(h), MSG_DONTWAIT | MSG_TRUNC);

	if (n == 0)
		_exit(0);	/* the worker is gone */
	return n >= (ssize_t)sizeof(h) && h.type == SB_C_KILL;
}

/* After a command: every process of the sandbox but the kept ones is
 * dead and reaped, so that nothing writes once EXIT is reported.  With
 * kept processes the init cannot wait for "no children left"; it kills
 * and reaps until no other process is alive (bounded: one stuck in the
 * kernel is left to the session's end). */
static void reap_rest(const struct sb_launch *l, struct relay *r)
{
	int64_t give_up = mono_us() + 10000000;

	if (!l->native || nkept == 0) {
		reap(r, l->native);
		return;
	}
	for (;;) {
		struct pollfd p = { r->sigfd, POLLIN, 0 };
		struct signalfd_siginfo si;

		reap(r, 0);
		if (kill_unkept() == 0 || mono_us() > give_up)
			break;
		(void)poll(&p, 1, 10);
		while (read(r->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
			;
	}
	reap(r, 0);
}

static void relay_loop(const struct sb_launch *l, struct relay *r)
{
	int64_t grace_end = 0;
	int killed = 0;

	while (r->out_r >= 0 || r->err_r >= 0 || !r->main_done) {
		struct pollfd p[4];
		int timeout = -1, n;

		p[0].fd = r->out_r;
		p[1].fd = r->err_r;
		p[2].fd = r->sigfd;
		p[3].fd = r->watch_sock ? r->sock : -1;
		p[0].events = p[1].events = p[2].events = p[3].events = POLLIN;
		if (killed) {
			int64_t left = (grace_end - mono_us()) / 1000;

			if (left <= 0)
				break;	/* something holds a pipe open */
			timeout = (int)left;
		}
		n = poll(p, 4, timeout);
		if (n < 0 && errno != EINTR)
			break;
		if (n > 0 && p[3].revents != 0 && take_kill(r) && !killed) {
			kill_rest(l, r->main_pid);
			(void)kill(r->main_pid, SIGKILL);
		}
		if (n > 0 && (p[2].revents & POLLIN)) {
			struct signalfd_siginfo si;

			while (read(r->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
				;
			reap(r, 0);
		}
		if (n > 0 && p[0].revents != 0)
			relay_pipe(r, &r->out_r, SB_F_OUT);
		if (n > 0 && p[1].revents != 0)
			relay_pipe(r, &r->err_r, SB_F_ERR);
		if (r->main_done && !killed) {
			kill_rest(l, r->main_pid);
			killed = 1;
			grace_end = mono_us() + 2000000;
		}
	}
	if (!killed)
		kill_rest(l, r->main_pid);
}

static int disk_full(const struct sb_launch *l)
{
	struct statfs sf;

	if (!l->native || statfs(l->workspace, &sf) != 0)
		return 0;
	return sf.f_blocks > 0 && sf.f_bavail == 0;
}

static void report_exit(const struct sb_launch *l, struct relay *r)
{
	struct sb_exit e;

	memset(&e, 0, sizeof(e));
	e.wstatus = r->wstatus;
	e.disk_full = (uint32_t)disk_full(l);
	e.cpu_us = (uint64_t)r->ru.ru_utime.tv_sec * 1000000 +
		   (uint64_t)r->ru.ru_utime.tv_usec +
		   (uint64_t)r->ru.ru_stime.tv_sec * 1000000 +
		   (uint64_t)r->ru.ru_stime.tv_usec;
	e.run_us = (uint64_t)(r->end_us - r->start_us);
	sb_send_frame(r->sock, SB_F_EXIT, 0, &e, sizeof(e));
}

/* ---- running a command ---- */

static int make_pipe(int fds[2])
{
	if (pipe2(fds, O_CLOEXEC) != 0)
		return -1;
	return fcntl(fds[0], F_SETFL, O_NONBLOCK);
}

/* Spawns the workload; returns its pid, or -1 with *kind and *err saying
 * why (SB_FAIL_SETUP or SB_FAIL_EXEC). */
static pid_t spawn_workload(const struct sb_launch *l, struct relay *r,
			    int use_input, uint32_t *kind, int *err)
{
	struct wl_args w;
	int out[2] = { -1, -1 }, errp[2] = { -1, -1 };
	pid_t pid = -1;

	memset(&w, 0, sizeof(w));
	w.l = l;
	*kind = SB_FAIL_SETUP;
	if (make_pipe(out) != 0 || make_pipe(errp) != 0) {
		*err = errno;
		goto fail;
	}
	w.in_fd = use_input ? open("input", O_RDONLY | O_CLOEXEC)
			    : open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (w.in_fd < 0) {
		*err = errno;
		goto fail;
	}
	w.out_fd = out[1];
	w.err_fd = errp[1];
	r->start_us = mono_us();
	pid = clone(workload_main, wl_stack + sizeof(wl_stack),
		    CLONE_VM | CLONE_VFORK | SIGCHLD, &w);
	*err = errno;
	close(w.in_fd);
	if (pid > 0 && w.exec_errno != 0) {
		*kind = w.exec_errno > 0 ? SB_FAIL_EXEC : SB_FAIL_SETUP;
		*err = w.exec_errno > 0 ? w.exec_errno : -w.exec_errno;
		pid = -1;	/* it has exited; reaped with the others */
	}
	if (pid > 0) {
		close(out[1]);
		close(errp[1]);
		r->out_r = out[0];
		r->err_r = errp[0];
		return pid;
	}
fail:
	if (out[0] >= 0) {
		close(out[0]);
		close(out[1]);
	}
	if (errp[0] >= 0) {
		close(errp[0]);
		close(errp[1]);
	}
	return -1;
}

/* Runs argv of l to its end: READY, relayed output, EXIT.  Returns 0, or
 * -1 after sending FAIL when it could not start. */
static int run_command(const struct sb_launch *l, int sock, int sigfd,
		       int use_input, int session)
{
	struct relay r;
	uint32_t wpid, kind;
	int err;

	memset(&r, 0, sizeof(r));
	r.sock = sock;
	r.sigfd = sigfd;
	r.watch_sock = session;
	r.main_pid = spawn_workload(l, &r, use_input, &kind, &err);
	if (r.main_pid < 0) {
		const char *what = kind == SB_FAIL_EXEC ? l->argv[0]
				   : "prepare the workload (stdio, rlimits)";

		if (!session)
			fail_exit(sock, kind, err, what);
		reap(&r, 0);
		send_fail(sock, kind, err, what);
		return -1;
	}
	wpid = (uint32_t)r.main_pid;
	sb_send_frame(sock, SB_F_READY, 0, &wpid, sizeof(wpid));
	relay_loop(l, &r);
	reap_rest(l, &r);	/* everything, so that nothing writes */
	report_exit(l, &r);
	return 0;
}

/* After the set-up, the init gives up what the workload must not have, so
 * that every process it starts inherits it (and the init itself, next to
 * hostile code, is held to the same rules): every capability (bounding,
 * ambient, effective, permitted, inheritable) and locked securebits,
 * NO_NEW_PRIVS, the seccomp filter.  One filter install per sandbox, not
 * per command. */
static void confine_init(int sock)
{
	int e;

	if (drop_capabilities() != 0)
		fail_exit(sock, SB_FAIL_SETUP, errno, "drop capabilities");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		fail_exit(sock, SB_FAIL_SETUP, errno, "set no_new_privs");
	e = sb_seccomp_install();
	if (e != 0)
		fail_exit(sock, SB_FAIL_SETUP, -e, "install the seccomp filter");
}

/* Moves the init into the job's cgroups before it runs anything else;
 * children follow.  The write waits out the kernel's cgroup migration. */
static void join_cgroups(const struct sb_launch *l, int sock)
{
	int i;

	for (i = 0; i < l->ncg; i++)
		if (write(l->cg_procs[i], "0", 1) != 1)
			fail_exit(sock, SB_FAIL_SETUP, errno, "join the job's cgroup");
}

/* ---- a session: operations from the worker, one at a time ---- */

static char cmd_buf[SB_FRAME_MAX + 1];
static char *exec_argv[SB_EXEC_ARGC_MAX + 1];

/* Splits the first argc strings of an EXEC or SPAWN payload into
 * exec_argv; *used is the bytes they took.  0 or -1. */
static int parse_args(char *p, size_t n, uint32_t argc, size_t *used)
{
	size_t off = 0;
	uint32_t i;

	if (argc == 0 || argc > SB_EXEC_ARGC_MAX || n == 0 || p[n - 1] != '\0')
		return -1;
	for (i = 0; i < argc; i++) {
		if (off >= n)
			return -1;
		exec_argv[i] = p + off;
		off += strlen(p + off) + 1;
	}
	exec_argv[argc] = NULL;
	*used = off;
	return 0;
}

static int parse_exec(char *p, size_t n, uint32_t argc)
{
	size_t used = 0;

	return parse_args(p, n, argc, &used) == 0 && used == n ? 0 : -1;
}

/* A SPAWN's environment: the session's, with the KEY=VALUE strings after
 * the arguments (p[0..n)) added or replacing the same names. */
static char *spawn_envp[SB_SPAWN_ENV_MAX + 1];

static int same_name(const char *a, const char *b)
{
	size_t k = strcspn(a, "=");

	return strncmp(a, b, k + 1) == 0;
}

static int build_spawn_env(const struct sb_launch *l, char *p, size_t n,
			   const char **path)
{
	size_t i, k = 0, off;

	for (i = 0; l->envp[i] != NULL; i++) {
		int replaced = 0;

		for (off = 0; off < n && !replaced; off += strlen(p + off) + 1)
			replaced = same_name(l->envp[i], p + off);
		if (replaced)
			continue;
		if (k == SB_SPAWN_ENV_MAX)
			return -1;
		spawn_envp[k++] = l->envp[i];
	}
	for (off = 0; off < n; off += strlen(p + off) + 1) {
		if (strchr(p + off, '=') == NULL || p[off] == '=' || k == SB_SPAWN_ENV_MAX)
			return -1;
		spawn_envp[k++] = p + off;
	}
	spawn_envp[k] = NULL;
	*path = l->path;
	for (i = 0; i < k; i++)
		if (strncmp(spawn_envp[i], "PATH=", 5) == 0)
			*path = spawn_envp[i] + 5;
	return 0;
}

/* SPAWN: starts exec_argv as a kept process (an MCP stdio server) and
 * hands the worker its stdin's write end and its stdout's and stderr's
 * read ends.  Like a command it runs in the workspace with the session's
 * environment (plus the SPAWN's own variables) and rlimits, in its own
 * session (setsid), but it outlives the operation: it ends when it
 * exits, or with the sandbox. */
static void spawn_kept(const struct sb_launch *l, int sock)
{
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, errp[2] = { -1, -1 };
	int give[SB_SPAWN_FDS], e = 0, i;
	uint32_t kind = SB_FAIL_SETUP, wpid;
	const char *what = "start the server (pipes)";
	struct wl_args w;
	pid_t pid = -1;

	memset(&w, 0, sizeof(w));
	w.l = l;
	if (nkept >= SB_SPAWN_MAX) {
		e = EAGAIN;
		what = "start another server: a session runs at most 16";
		goto fail;
	}
	if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 ||
	    pipe2(errp, O_CLOEXEC) != 0) {
		e = errno;
		goto fail;
	}
	w.in_fd = in[0];
	w.out_fd = out[1];
	w.err_fd = errp[1];
	pid = clone(workload_main, wl_stack + sizeof(wl_stack),
		    CLONE_VM | CLONE_VFORK | SIGCHLD, &w);
	e = errno;
	if (pid > 0 && w.exec_errno != 0) {
		kind = w.exec_errno > 0 ? SB_FAIL_EXEC : SB_FAIL_SETUP;
		e = w.exec_errno > 0 ? w.exec_errno : -w.exec_errno;
		what = kind == SB_FAIL_EXEC ? l->argv[0]
		       : "prepare the server (stdio, rlimits)";
		pid = -1;	/* it has exited; reaped with the others */
	}
	if (pid < 0)
		goto fail;
	kept[nkept++] = pid;
	wpid = (uint32_t)pid;
	give[0] = in[1];
	give[1] = out[0];
	give[2] = errp[0];
	send_frame_fds(sock, SB_F_SPAWNED, 0, &wpid, sizeof(wpid), give,
		       SB_SPAWN_FDS);
	for (i = 0; i < 2; i++) {
		close(in[i]);
		close(out[i]);
		close(errp[i]);
	}
	return;
fail:
	for (i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (out[i] >= 0)
			close(out[i]);
		if (errp[i] >= 0)
			close(errp[i]);
	}
	send_fail(sock, kind, e, what);
}

static void serve_spawn(const struct sb_launch *cmd, int sock, char *p,
			size_t pn, uint32_t argc)
{
	struct sb_launch l = *cmd;
	size_t used = 0;
	int bad = parse_args(p, pn, argc, &used) != 0 ||
		  build_spawn_env(cmd, p + used, pn - used, &l.path) != 0;

	l.envp = spawn_envp;
	if (!bad)
		spawn_kept(&l, sock);
	sb_send_frame(sock, SB_F_OPDONE, bad ? EINVAL : 0, NULL, 0);
}

/* Between operations: reaps what exited (a kept process that died). */
static void reap_between_ops(int sigfd)
{
	struct signalfd_siginfo si;
	pid_t p;
	int st;

	while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		;
	while ((p = waitpid(-1, &st, WNOHANG)) > 0)
		forget_kept(p);
}

/* Waits for the next operation; reaps exited processes meanwhile. */
static ssize_t next_op(int sock, int sigfd)
{
	for (;;) {
		struct pollfd p[2] = { { sock, POLLIN, 0 }, { sigfd, POLLIN, 0 } };
		ssize_t n;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			_exit(2);
		if (p[1].revents != 0)
			reap_between_ops(sigfd);
		if (p[0].revents == 0)
			continue;
		n = recv(sock, cmd_buf, SB_FRAME_MAX, MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		return n;
	}
}

static _Noreturn void serve_session(const struct sb_launch *l, int sock,
				    int sigfd)
{
	struct sb_launch cmd = *l;
	int ws = open(l->workspace, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (ws < 0)
		fail_exit(sock, SB_FAIL_SETUP, errno, "open the workspace");
	cmd.argv = exec_argv;
	sb_send_frame(sock, SB_F_OPDONE, 0, NULL, 0);	/* ready */
	for (;;) {
		struct sb_hdr h;
		ssize_t n = next_op(sock, sigfd);
		size_t pn;
		char *p = cmd_buf + sizeof(h);

		if (n <= 0)
			_exit(0);	/* the worker closed the session */
		if ((size_t)n < sizeof(h))
			continue;
		memcpy(&h, cmd_buf, sizeof(h));
		pn = (size_t)n - sizeof(h);
		p[pn] = '\0';	/* cmd_buf has room for it */
		switch (h.type) {
		case SB_C_EXEC:
			if (parse_exec(p, pn, h.arg) == 0)
				(void)run_command(&cmd, sock, sigfd, 0, 1);
			sb_send_frame(sock, SB_F_OPDONE, 0, NULL, 0);
			break;
		case SB_C_SPAWN:
			serve_spawn(&cmd, sock, p, pn, h.arg);
			break;
		case SB_C_WRITE:
			sb_session_write(ws, sock, p, h.arg);
			break;
		case SB_C_READ:
			sb_session_read(ws, sock, p, l->outputs_max_bytes);
			break;
		case SB_C_LIST:
			sb_session_list(ws, sock, p, l->outputs_max_files);
			break;
		case SB_C_REMOVE:
			sb_session_remove(ws, sock, p);
			break;
		default:	/* a KILL after its command ended, ... */
			break;
		}
	}
}

/* ---- the init ---- */

_Noreturn void sb_init_main(const struct sb_launch *l, int sock)
{
	sigset_t chld;
	int sigfd;

	join_cgroups(l, sock);
	sock = isolate_fds(sock);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
		_exit(2);
	wait_go(sock);
	umask(022);
	reset_ignored_signals();
	if (l->native)
		setup_namespaces(l, sock);
	else
		(void)prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	stage_workspace(l, sock);
	if (l->native)
		confine_init(sock);

	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sigfd < 0)
		fail_exit(sock, SB_FAIL_SETUP, errno, "signalfd");
	if (l->session)
		serve_session(l, sock, sigfd);
	if (run_command(l, sock, sigfd, l->spec->input != NULL, 0) == 0)
		sb_collect_outputs(l, sock);
	sb_send_frame(sock, SB_F_DONE, 0, NULL, 0);
	_exit(0);
}

/* Reads fields 48-51 of /proc/self/stat (arg_start .. env_end). */
void sb_init_learn_args(uintptr_t *arg_start, uintptr_t *arg_end,
			uintptr_t *env_start, uintptr_t *env_end)
{
	char *data = NULL, *p;
	size_t len;
	unsigned long long v[4];
	int field, i;

	*arg_start = *arg_end = *env_start = *env_end = 0;
	if (sb_read_proc("/proc/self/stat", 1 << 16, &data, &len))
		return;
	p = strrchr(data, ')');
	/* after ')' comes field 3 */
	for (field = 3; p != NULL && field <= 48; field++)
		p = strchr(p + 1, ' ');
	for (i = 0; p != NULL && i < 4; i++) {
		char *end;

		v[i] = strtoull(p + 1, &end, 10);
		p = *end == ' ' ? end : NULL;
		if (p == NULL && i < 3)
			break;
	}
	if (i == 4) {
		*arg_start = (uintptr_t)v[0];
		*arg_end = (uintptr_t)v[1];
		*env_start = (uintptr_t)v[2];
		*env_end = (uintptr_t)v[3];
	}
	free(data);
}
