/* sandbox.c - the sandbox's public API, on the worker's side: host probing,
 * starting a job (clone of the init, uid/gid maps, cgroups), reading the
 * init's frames without blocking, turning them into an outcome, and
 * sessions (one sandbox serving many operations).
 *
 * A job's states (job->state):
 *
 *   RUNNING ──(frames; then EOF on the socket)──▶ DRAINED ──▶ FINISHED
 *      │  timeout / output cap / kill: SIGKILL the init   ▲
 *      └──────────────────────────────────────────────────┘
 *
 * DRAINED becomes FINISHED as soon as the init has said DONE (it reaped
 * every process of the sandbox first) or, without DONE (killed, crashed),
 * once the init itself is reaped: its pid namespace is then empty.  An init
 * still exiting when its job is freed is reaped later (shoal_sandbox_reap).
 *
 * The job's fd is an epoll set of the socket (while RUNNING) and the
 * init's pidfd, so that a caller's poll wakes for frames and for the
 * init's exit and never spins on a socket at EOF.  Every number and
 * string from the init is checked: it runs hostile code next to it. */
#include "pool/sandbox.h"
#include "pool/sandbox_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/sha256.h"
#include "common/util.h"

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define NAME_MAX_LEN 1024	/* a staged or output path */
#define FRAMES_PER_STEP 64	/* bounds the time one step takes */

enum job_state { JOB_RUNNING, JOB_DRAINED, JOB_FINISHED };

enum session_op { OP_NONE, OP_OPEN, OP_EXEC, OP_WRITE, OP_READ, OP_LIST, OP_REMOVE,
		  OP_SPAWN };

/* Why the worker killed the init; the first reason wins. */
enum kill_reason { KILL_NONE, KILL_CANCEL, KILL_TIMEOUT, KILL_OUTPUT, KILL_PROTO };

struct shoal_sandbox_job {
	enum job_state state;
	int native;
	pid_t pid;		/* the init, as the worker sees it */
	int pidfd;
	int sock;		/* -1 once drained */
	int epfd;		/* the job's fd */
	int64_t start_us;
	int64_t deadline_ms;	/* INT64_MAX: none (or already acted on) */
	struct shoal_wire_sandbox lim;	/* numbers only: pointers dropped */
	char argv0[128];	/* for "command not found: ..." */
	char *tmpdir;		/* backend none: the host workspace */
	struct sb_cgroup cg;
	enum kill_reason killed;
	int reaped;		/* the init has been waited for */
	pid_t workload_pid;	/* from READY (host pid for backend none) */

	/* what the init reported */
	int got_exit, got_done, got_fail, outputs_over;
	struct sb_exit exit;
	struct sb_fail fail;
	char fail_what[256];
	char proto_err[128];
	size_t out_max, files_max_bytes, files_bytes;
	uint32_t files_max;
	struct shoal_buf cur_file;	/* the output file being received */
	struct shoal_sha256 cur_hash;	/* its digest so far: hashing as data
					 * arrives keeps each step short */

	char *frame;		/* SB_FRAME_MAX receive buffer */
	struct shoal_sandbox_outcome outcome;

	/* sessions (see "sessions" below); op is OP_NONE for a job */
	int session;
	enum session_op op;	/* the operation in flight */
	uint32_t op_errno;	/* from SB_F_OPDONE */
	char op_path[128];	/* for reasons: "read out/x.txt: ..." */
	uint64_t op_timeout_ms;
	unsigned long long oom0, pids0;	/* cgroup counters at the op's start */
	struct shoal_buf tx;	/* frames to send: [u32 length][frame]... */
	size_t tx_off;
	int tx_waiting;		/* EPOLLOUT is armed */
	int spawn_fds[SB_SPAWN_FDS];	/* a SPAWN's pipes until taken; -1 */
	int got_spawned;
};

/* ---- host probing (once) ---- */

static struct {
	int ran;
	int rc;
	char msg[SHOAL_ERRMSG_MAX];
	uint32_t outer_uid, outer_gid;
	int configured;
	int self_map;		/* root of a user namespace: map ourselves */
	uintptr_t arg_start, arg_end, env_start, env_end;
} g = { 0, 0, "", 65534, 65534, 0, 0, 0, 0, 0, 0 };

int shoal_sandbox_configure(const struct shoal_sandbox_host_config *cfg,
			    struct shoal_error *err)
{
	if (g.ran)
		return shoal_error_set(err, SHOAL_EINVAL,
				       "sandbox: configure must come before global_init");
	g.outer_uid = cfg->outer_uid;
	g.outer_gid = cfg->outer_gid;
	g.configured = 1;
	return SHOAL_OK;
}

void shoal_sandbox_host_info(struct shoal_sandbox_host_info *info)
{
	int privileged = geteuid() == 0 && !g.self_map;

	memset(info, 0, sizeof(*info));
	info->native_ok = g.ran && g.rc == SHOAL_OK;
	sb_cgroup_available(&info->cgroup_memory, &info->cgroup_pids);
	info->outer_uid = privileged ? g.outer_uid : (uint32_t)geteuid();
	info->outer_gid = privileged ? g.outer_gid : (uint32_t)getegid();
}

int sb_read_proc(const char *path, size_t max, char **data, size_t *len)
{
	size_t cap = 4096, got = 0;
	char *buf = malloc(cap + 1);
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || buf == NULL)
		goto fail;
	for (;;) {
		ssize_t n;

		if (got == cap) {
			char *bigger;

			if (cap >= max)
				goto fail;
			cap = cap * 2 > max ? max : cap * 2;
			bigger = realloc(buf, cap + 1);
			if (bigger == NULL)
				goto fail;
			buf = bigger;
		}
		n = read(fd, buf + got, cap - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	*data = buf;
	*len = got;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	free(buf);
	return -1;
}

/* Reads a small integer sysctl; -1 when absent. */
static long read_sysctl(const char *path)
{
	char buf[64];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return strtol(buf, NULL, 10);
}

/* The knobs that switch namespaces off, named in the error. */
static int check_sysctls(struct shoal_error *err)
{
	static const struct { const char *path, *what; } zero_means_off[] = {
		{ "/proc/sys/user/max_user_namespaces", "user" },
		{ "/proc/sys/user/max_mnt_namespaces", "mount" },
		{ "/proc/sys/user/max_pid_namespaces", "pid" },
		{ "/proc/sys/user/max_net_namespaces", "network" },
	};
	size_t i;

	for (i = 0; i < SHOAL_ARRAY_LEN(zero_means_off); i++)
		if (read_sysctl(zero_means_off[i].path) == 0)
			return shoal_error_set(err, SHOAL_EUNSUPPORTED,
					       "%s namespaces are disabled: %s is 0",
					       zero_means_off[i].what,
					       zero_means_off[i].path);
	if (geteuid() != 0 &&
	    read_sysctl("/proc/sys/kernel/unprivileged_userns_clone") == 0)
		return shoal_error_set(err, SHOAL_EUNSUPPORTED,
				       "user namespaces are disabled: "
				       "kernel.unprivileged_userns_clone=0");
	return SHOAL_OK;
}

static int probe_sandbox(struct shoal_error *err);

/* At a normal exit, give inits still exiting a moment to be reaped, so that
 * their cgroups go too (a worker that is killed leaves them to the next
 * worker's sweep). */
static void reap_at_exit(void)
{
	int i;

	for (i = 0; i < 50 && shoal_sandbox_reap() > 0; i++)
		usleep(20000);
}

int shoal_sandbox_global_init(struct shoal_error *err)
{
	if (g.ran) {
		if (g.rc != SHOAL_OK)
			shoal_error_set(err, g.rc, "%s", g.msg);
		return g.rc;
	}
	g.ran = 1;
	atexit(reap_at_exit);
	sb_init_learn_args(&g.arg_start, &g.arg_end, &g.env_start, &g.env_end);
	g.rc = check_sysctls(err);
	if (g.rc == SHOAL_OK)
		g.rc = sb_seccomp_build(err);
	if (g.rc == SHOAL_OK)
		g.rc = sb_mounts_plan(err);
	if (g.rc == SHOAL_OK) {
		sb_cgroup_probe();
		g.rc = probe_sandbox(err);
	}
	if (g.rc != SHOAL_OK && err != NULL)
		shoal_strlcpy(g.msg, err->msg, sizeof(g.msg));
	else if (g.rc != SHOAL_OK)
		shoal_strlcpy(g.msg, "sandbox: host probe failed", sizeof(g.msg));
	return g.rc;
}

/* ---- spec validation ---- */

/* A relative path inside the workspace: no "..", ".", empty parts. */
static int valid_rel_path(const char *p)
{
	const char *s = p;

	if (p == NULL || *p == '\0' || *p == '/' || strlen(p) > NAME_MAX_LEN)
		return 0;
	while (*s != '\0') {
		const char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);

		if (n == 0 || (n == 1 && s[0] == '.') ||
		    (n == 2 && s[0] == '.' && s[1] == '.') || n > NAME_MAX)
			return 0;
		s += n;
		if (*s == '/')
			s++;
		if (e != NULL && *s == '\0')
			return 0;	/* trailing slash */
	}
	return 1;
}

/* An absolute, normalised host/sandbox path for readonly_paths. */
static int valid_abs_path(const char *p)
{
	static const char *const reserved[] = { "/proc", "/dev", "/tmp", "/workspace" };
	size_t i;

	if (p == NULL || p[0] != '/' || p[1] == '\0' || !valid_rel_path(p + 1))
		return 0;
	for (i = 0; i < SHOAL_ARRAY_LEN(reserved); i++) {
		size_t n = strlen(reserved[i]);

		if (strncmp(p, reserved[i], n) == 0 && (p[n] == '\0' || p[n] == '/'))
			return 0;
	}
	return 1;
}

static int validate_spec(const struct shoal_sandbox_spec *s, int session,
			 struct shoal_error *err)
{
	size_t i;

	if (!session && (s->argc == 0 || s->argv == NULL || s->argv[0] == NULL ||
			 s->argv[0][0] == '\0'))
		return shoal_error_set(err, SHOAL_EINVAL, "sandbox: empty command");
	for (i = 0; i < s->argc; i++)
		if (s->argv[i] == NULL)
			return shoal_error_set(err, SHOAL_EINVAL,
					       "sandbox: argv[%zu] is NULL", i);
	for (i = 0; i < s->nenv; i++)
		if (s->env[i] == NULL || strchr(s->env[i], '=') == NULL ||
		    s->env[i][0] == '=')
			return shoal_error_set(err, SHOAL_EINVAL,
					       "sandbox: env entry %zu is not KEY=VALUE", i);
	for (i = 0; i < s->nfiles; i++) {
		const char *n = s->files[i].name;

		if (!valid_rel_path(n) || (s->files[i].data == NULL && s->files[i].len))
			return shoal_error_set(err, SHOAL_EINVAL,
					       "sandbox: bad staged file name \"%s\"",
					       n ? n : "(null)");
		if (s->input != NULL && strcmp(n, "input") == 0)
			return shoal_error_set(err, SHOAL_EINVAL,
					       "sandbox: staged file \"input\" clashes "
					       "with the input");
	}
	for (i = 0; i < s->noutputs; i++)
		if (!valid_rel_path(s->outputs[i]))
			return shoal_error_set(err, SHOAL_EINVAL,
					       "sandbox: bad outputs folder \"%s\"",
					       s->outputs[i] ? s->outputs[i] : "(null)");
	for (i = 0; i < s->limits.n_readonly_paths; i++)
		if (!valid_abs_path(s->limits.readonly_paths[i]))
			return shoal_error_set(err, SHOAL_EINVAL,
					       "sandbox: readonly path \"%s\" must be an "
					       "absolute, normalised path outside /proc, "
					       "/dev, /tmp and /workspace",
					       s->limits.readonly_paths[i] ?
					       s->limits.readonly_paths[i] : "(null)");
	if (s->limits.backend != SHOAL_SANDBOX_NATIVE &&
	    s->limits.backend != SHOAL_SANDBOX_NONE)
		return shoal_error_set(err, SHOAL_EINVAL,
				       "sandbox: unknown backend %u", s->limits.backend);
	return SHOAL_OK;
}

/* ---- the launch record ---- */

struct launch_mem {
	struct sb_launch l;
	struct shoal_sandbox_spec spec;	/* the caller's, some parts copied */
	char **argv, **envp;
	struct shoal_sandbox_file *files;
	const char **outputs;
	void **owned;			/* copies made by keep_out_of_wipe */
	size_t nowned;
	struct sb_bind *binds;
	char *rootfs;
};

static void launch_free(struct launch_mem *m)
{
	size_t i;

	for (i = 0; i < (size_t)m->l.ncg; i++)
		close(m->l.cg_procs[i]);
	for (i = 0; i < m->nowned; i++)
		free(m->owned[i]);
	free(m->owned);
	free(m->files);
	free(m->outputs);
	free(m->argv);
	free(m->envp);
	for (i = 0; m->binds != NULL && i < m->l.nbinds; i++)
		free((char *)m->binds[i].src);
	free(m->binds);
	free(m->rootfs);
}

static void add_rlimit(struct sb_launch *l, int res, rlim_t soft, rlim_t hard)
{
	l->rlims[l->nrlims].resource = res;
	l->rlims[l->nrlims].lim.rlim_cur = soft;
	l->rlims[l->nrlims].lim.rlim_max = hard;
	l->nrlims++;
}

static void plan_rlimits(struct sb_launch *l, const struct shoal_wire_sandbox *lim,
			 const struct sb_cgroup *cg)
{
	struct rlimit nofile;
	rlim_t hard = 4096;

	add_rlimit(l, RLIMIT_CORE, 0, 0);
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_max < hard)
		hard = nofile.rlim_max;
	add_rlimit(l, RLIMIT_NOFILE, hard < 1024 ? hard : 1024, hard);
	/* with a pids cgroup, the cgroup (whose hits can be counted) rules;
	 * otherwise RLIMIT_NPROC, counted per user namespace (Linux 5.14+),
	 * +1 because the init runs as the same uid */
	if (lim->pids > 0 && !cg->has_pids)
		add_rlimit(l, RLIMIT_NPROC, (rlim_t)lim->pids + 1,
			   (rlim_t)lim->pids + 1);
	if (lim->memory > 0 && !cg->has_memory)
		add_rlimit(l, RLIMIT_AS, lim->memory, lim->memory);
	if (lim->cpu_time_ms > 0) {
		rlim_t s = (rlim_t)((lim->cpu_time_ms + 999) / 1000);

		add_rlimit(l, RLIMIT_CPU, s, s + 1);
	}
	if (lim->disk > 0)
		add_rlimit(l, RLIMIT_FSIZE, lim->disk, lim->disk);
}

/* The init wipes its copy of the worker's own argv and environ strings, so
 * that /proc/1/cmdline shows nothing of the worker.  Spec data that lives
 * there (a command taken from the worker's argv, an env value from
 * getenv) is copied out first; *p is replaced by the copy. */
static int keep_out_of_wipe(struct launch_mem *m, const void **p, size_t n)
{
	uintptr_t a = (uintptr_t)*p;
	void **grown, *copy;

	if (*p == NULL || !((a < g.arg_end && a + n > g.arg_start) ||
			    (a < g.env_end && a + n > g.env_start)))
		return SHOAL_OK;
	copy = malloc(n > 0 ? n : 1);
	grown = realloc(m->owned, (m->nowned + 1) * sizeof(*grown));
	if (copy == NULL || grown == NULL) {
		free(copy);
		if (grown != NULL)
			m->owned = grown;
		return SHOAL_ENOMEM;
	}
	memcpy(copy, *p, n);
	m->owned = grown;
	m->owned[m->nowned++] = copy;
	*p = copy;
	return SHOAL_OK;
}

static int keep_string(struct launch_mem *m, const char **s)
{
	return keep_out_of_wipe(m, (const void **)s, *s ? strlen(*s) + 1 : 0);
}

static int build_argv_env(struct launch_mem *m, const struct shoal_sandbox_spec *s)
{
	size_t i;
	int rc = SHOAL_OK;

	m->argv = calloc(s->argc + 1, sizeof(char *));
	m->envp = calloc(s->nenv + 1, sizeof(char *));
	if (m->argv == NULL || m->envp == NULL)
		return SHOAL_ENOMEM;
	for (i = 0; rc == SHOAL_OK && i < s->argc; i++) {
		const char *a = s->argv[i];

		rc = keep_string(m, &a);
		m->argv[i] = (char *)a;
	}
	m->l.path = "/usr/local/bin:/usr/bin:/bin";
	for (i = 0; rc == SHOAL_OK && i < s->nenv; i++) {
		const char *e = s->env[i];

		rc = keep_string(m, &e);
		m->envp[i] = (char *)e;
		if (strncmp(e, "PATH=", 5) == 0)
			m->l.path = e + 5;
	}
	m->l.argv = m->argv;
	m->l.envp = m->envp;
	return rc;
}

/* The spec the init reads: files, input and outputs, kept out of the
 * wiped area as well. */
static int build_spec_copy(struct launch_mem *m, const struct shoal_sandbox_spec *s)
{
	size_t i;
	int rc = SHOAL_OK;

	m->spec = *s;
	if (s->nfiles > 0) {
		m->files = calloc(s->nfiles, sizeof(*m->files));
		if (m->files == NULL)
			return SHOAL_ENOMEM;
		memcpy(m->files, s->files, s->nfiles * sizeof(*m->files));
		m->spec.files = m->files;
	}
	for (i = 0; rc == SHOAL_OK && i < s->nfiles; i++) {
		rc = keep_string(m, &m->files[i].name);
		if (rc == SHOAL_OK)
			rc = keep_out_of_wipe(m, &m->files[i].data, m->files[i].len);
	}
	if (rc == SHOAL_OK)
		rc = keep_out_of_wipe(m, &m->spec.input, s->input_len);
	if (rc == SHOAL_OK && s->noutputs > 0) {
		m->outputs = calloc(s->noutputs, sizeof(*m->outputs));
		if (m->outputs == NULL)
			return SHOAL_ENOMEM;
		memcpy(m->outputs, s->outputs, s->noutputs * sizeof(*m->outputs));
		m->spec.outputs = m->outputs;
	}
	for (i = 0; rc == SHOAL_OK && i < s->noutputs; i++)
		rc = keep_string(m, &m->outputs[i]);
	m->l.spec = &m->spec;
	return rc;
}

/* readonly_paths and rootfs are resolved on the host here: the init sees
 * the host only at /o, where an absolute symlink would point elsewhere. */
static int resolve_paths(struct launch_mem *m, const struct shoal_wire_sandbox *lim,
			 struct shoal_error *err)
{
	uint32_t i;

	if (lim->rootfs != NULL && lim->rootfs[0] != '\0' &&
	    strcmp(lim->rootfs, "host") != 0) {
		struct stat st;

		m->rootfs = realpath(lim->rootfs, NULL);
		if (m->rootfs == NULL || stat(m->rootfs, &st) != 0 ||
		    !S_ISDIR(st.st_mode))
			return shoal_error_errno(err, SHOAL_ENOTFOUND,
						 "sandbox: rootfs %s", lim->rootfs);
		m->l.rootfs_dir = m->rootfs;
	}
	if (lim->n_readonly_paths == 0)
		return SHOAL_OK;
	m->binds = calloc(lim->n_readonly_paths, sizeof(*m->binds));
	if (m->binds == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	for (i = 0; i < lim->n_readonly_paths; i++) {
		struct sb_bind *b = &m->binds[i];
		struct stat st;
		char *real = realpath(lim->readonly_paths[i], NULL);

		if (real == NULL || stat(real, &st) != 0) {
			free(real);
			return shoal_error_errno(err, SHOAL_ENOTFOUND,
						 "sandbox: readonly path %s",
						 lim->readonly_paths[i]);
		}
		b->src = real;
		b->dst = lim->readonly_paths[i];
		b->is_dir = S_ISDIR(st.st_mode);
		m->l.nbinds = i + 1;
	}
	m->l.binds = m->binds;
	return SHOAL_OK;
}

static void scratch_options(struct sb_launch *l, uint64_t disk)
{
	unsigned long long inodes = disk / 1024;

	if (disk == 0) {
		snprintf(l->scratch_opts, sizeof(l->scratch_opts), "mode=0755");
		return;
	}
	if (inodes < 4096)
		inodes = 4096;
	if (inodes > 1048576)
		inodes = 1048576;
	snprintf(l->scratch_opts, sizeof(l->scratch_opts),
		 "mode=0755,size=%llu,nr_inodes=%llu",
		 (unsigned long long)disk, inodes);
}

/* ---- process plumbing ---- */

int sb_pidfd_send_signal(int pidfd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

static int write_proc(pid_t pid, const char *file, const char *text)
{
	char path[64];
	size_t len = strlen(text);
	ssize_t w;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/%s", (long)pid, file);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	w = write(fd, text, len);
	if (w < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	close(fd);
	return w == (ssize_t)len ? 0 : -1;
}

/* One id mapped: inside SB_UID/SB_GID; outside, the configured
 * unprivileged ids when we are root of the host, else our own ids.  Root
 * of a user namespace (a rootless container) cannot map ids its parent
 * does not: it is detected by the first refusal and maps itself from then
 * on, as any unprivileged worker does. */
static int write_id_maps(pid_t pid, struct shoal_error *err)
{
	char map[64];
	int privileged = geteuid() == 0 && !g.self_map;
	unsigned long ou = privileged ? g.outer_uid : (unsigned long)geteuid();
	unsigned long og = privileged ? g.outer_gid : (unsigned long)getegid();

	snprintf(map, sizeof(map), "%d %lu 1\n", SB_UID, ou);
	if (write_proc(pid, "uid_map", map) != 0) {
		if (privileged && errno == EPERM) {
			g.self_map = 1;
			return write_id_maps(pid, err);
		}
		return shoal_error_errno(err, SHOAL_EUNSUPPORTED,
					 "sandbox: writing uid_map \"%d %lu 1\"",
					 SB_UID, ou);
	}
	if (!privileged && write_proc(pid, "setgroups", "deny") != 0)
		return shoal_error_errno(err, SHOAL_EUNSUPPORTED,
					 "sandbox: writing setgroups");
	snprintf(map, sizeof(map), "%d %lu 1\n", SB_GID, og);
	if (write_proc(pid, "gid_map", map) != 0)
		return shoal_error_errno(err, SHOAL_EUNSUPPORTED,
					 "sandbox: writing gid_map \"%d %lu 1\"",
					 SB_GID, og);
	return SHOAL_OK;
}

static const char *clone_hint(int e)
{
	switch (e) {
	case EPERM:
		return " (user namespaces may be restricted: see "
		       "kernel.unprivileged_userns_clone, "
		       "kernel.apparmor_restrict_unprivileged_userns, or a "
		       "container's seccomp profile)";
	case ENOSPC:
		return " (a max_*_namespaces limit in /proc/sys/user was reached)";
	case EINVAL:
		return " (the kernel lacks a namespace type or pidfds: Linux 5.3+ "
		       "with user, mount, pid, net, ipc and uts namespaces)";
	default:
		return "";
	}
}

/* Forks the init.  Signals stay blocked in the child until it execs the
 * workload, so that no handler of the worker ever runs there. */
static int clone_init(struct shoal_sandbox_job *job, const struct sb_launch *l,
		      int child_sock, struct shoal_error *err)
{
	unsigned long flags = CLONE_PIDFD | SIGCHLD;
	sigset_t all, old;
	int pidfd = -1;
	long pid;

	/* the init makes the other namespaces itself (sandbox_init.c) */
	if (l->native)
		flags |= CLONE_NEWUSER | CLONE_NEWPID;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid = syscall(SYS_clone, flags, NULL, &pidfd, NULL, 0);
	if (pid == 0)
		sb_init_main(l, child_sock);	/* never returns */
	{
		int e = errno;

		pthread_sigmask(SIG_SETMASK, &old, NULL);
		errno = e;
	}
	if (pid < 0)
	{
		int e = errno;

		shoal_error_errno(err, l->native ? SHOAL_EUNSUPPORTED : SHOAL_ESYS,
				  "sandbox: clone%s", l->native ?
				  " with new user and pid namespaces" : "");
		if (l->native && err != NULL) {
			size_t used = strlen(err->msg);

			snprintf(err->msg + used, sizeof(err->msg) - used, "%s",
				 clone_hint(e));
		}
		return l->native ? SHOAL_EUNSUPPORTED : SHOAL_ESYS;
	}
	job->pid = (pid_t)pid;
	job->pidfd = pidfd;
	return SHOAL_OK;
}

static void kill_command(struct shoal_sandbox_job *job, enum kill_reason why);

static void kill_init(struct shoal_sandbox_job *job, enum kill_reason why)
{
	if (job->session && job->op == OP_EXEC && job->state == JOB_RUNNING &&
	    why != KILL_PROTO) {
		/* the command, not the session; session_step escalates if
		 * the init does not answer */
		if (job->killed == KILL_NONE)
			kill_command(job, why);
		return;
	}
	if (job->killed == KILL_NONE)
		job->killed = why;
	if (job->pidfd >= 0)
		(void)sb_pidfd_send_signal(job->pidfd, SIGKILL);
	/* backend none has no pid namespace: its process group too */
	if (!job->native && job->workload_pid > 0)
		(void)kill(-job->workload_pid, SIGKILL);
	job->deadline_ms = INT64_MAX;
}

static int send_go(int sock)
{
	struct sb_hdr h = { SB_C_GO, 0 };

	return send(sock, &h, sizeof(h), MSG_NOSIGNAL) == (ssize_t)sizeof(h) ? 0 : -1;
}

static int setup_epoll(struct shoal_sandbox_job *job)
{
	struct epoll_event ev;

	job->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (job->epfd < 0)
		return -1;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.fd = job->sock;
	if (epoll_ctl(job->epfd, EPOLL_CTL_ADD, job->sock, &ev) != 0)
		return -1;
	ev.data.fd = job->pidfd;
	return epoll_ctl(job->epfd, EPOLL_CTL_ADD, job->pidfd, &ev);
}

/* After clone: maps, cgroups, GO.  On error the init is killed. */
static int release_init(struct shoal_sandbox_job *job, struct shoal_error *err)
{
	int rc = SHOAL_OK;

	if (job->native)
		rc = write_id_maps(job->pid, err);
	if (rc == SHOAL_OK && send_go(job->sock) != 0)
		rc = shoal_error_errno(err, SHOAL_ESYS, "sandbox: starting the init");
	if (rc == SHOAL_OK && (fcntl(job->sock, F_SETFL, O_NONBLOCK) != 0 ||
			       setup_epoll(job) != 0))
		rc = shoal_error_errno(err, SHOAL_ESYS, "sandbox: job descriptors");
	if (rc != SHOAL_OK) {
		siginfo_t si;

		/* start's error path: "no process is left" */
		(void)sb_pidfd_send_signal(job->pidfd, SIGKILL);
		while (waitid((idtype_t)P_PIDFD, (id_t)job->pidfd, &si, WEXITED) != 0 &&
		       errno == EINTR)
			;
		job->reaped = 1;
	}
	return rc;
}

/* ---- backend none: a workspace folder on the host ---- */

/* rm -rf without following symlinks; the workload may have left folders
 * without permissions. */
static void remove_tree_at(int parent, const char *name, int depth)
{
	struct dirent *e;
	DIR *d;
	int fd;

	if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
		return;
	(void)fchmodat(parent, name, 0700, 0);
	fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || depth > 64) {
		if (fd >= 0)
			close(fd);
		return;
	}
	d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return;
	}
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			remove_tree_at(dirfd(d), e->d_name, depth + 1);
	closedir(d);
	(void)unlinkat(parent, name, AT_REMOVEDIR);
}

static int make_tmp_workspace(struct shoal_sandbox_job *job,
			      struct shoal_error *err)
{
	const char *base = getenv("TMPDIR");
	char path[PATH_MAX];

	if (base == NULL || base[0] != '/')
		base = "/tmp";
	snprintf(path, sizeof(path), "%s/shoal-ws-XXXXXX", base);
	if (mkdtemp(path) == NULL)
		return shoal_error_errno(err, SHOAL_EIO,
					 "sandbox: creating a workspace in %s", base);
	job->tmpdir = shoal_strdup(path);
	if (job->tmpdir == NULL) {
		rmdir(path);
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	}
	return SHOAL_OK;
}

/* ---- start ---- */

static struct shoal_sandbox_job *job_new(const struct shoal_sandbox_spec *s)
{
	struct shoal_sandbox_job *job = calloc(1, sizeof(*job));

	if (job == NULL)
		return NULL;
	job->frame = malloc(SB_FRAME_MAX);
	if (job->frame == NULL) {
		free(job);
		return NULL;
	}
	job->pidfd = job->sock = job->epfd = -1;
	job->spawn_fds[0] = job->spawn_fds[1] = job->spawn_fds[2] = -1;
	job->native = s->limits.backend == SHOAL_SANDBOX_NATIVE;
	job->lim = s->limits;
	job->lim.rootfs = NULL;
	job->lim.readonly_paths = NULL;
	job->op_timeout_ms = s->limits.timeout_ms;
	if (s->argc > 0 && s->argv != NULL && s->argv[0] != NULL)
		shoal_strlcpy(job->argv0, s->argv[0], sizeof(job->argv0));
	job->out_max = (size_t)(s->limits.max_output ? s->limits.max_output
				: SHOAL_SANDBOX_DEFAULT_MAX_OUTPUT);
	job->files_max_bytes = s->outputs_max_bytes ? s->outputs_max_bytes
				: SHOAL_SANDBOX_OUTPUTS_MAX_BYTES;
	job->files_max = s->outputs_max_files ? s->outputs_max_files
			 : SHOAL_SANDBOX_OUTPUTS_MAX_FILES;
	shoal_buf_init(&job->outcome.out, job->out_max);
	shoal_buf_init(&job->outcome.err, job->out_max);
	shoal_buf_init(&job->cur_file, 0);
	shoal_buf_init(&job->tx, 0);
	return job;
}

static void close_spawned(struct shoal_sandbox_job *job)
{
	int i;

	for (i = 0; i < SB_SPAWN_FDS; i++) {
		if (job->spawn_fds[i] >= 0)
			close(job->spawn_fds[i]);
		job->spawn_fds[i] = -1;
	}
	job->got_spawned = 0;
}

static void job_release(struct shoal_sandbox_job *job)
{
	size_t i;

	close_spawned(job);
	if (job->cg.ndirs > 0)
		sb_cgroup_destroy(&job->cg);
	if (job->tmpdir != NULL) {
		remove_tree_at(AT_FDCWD, job->tmpdir, 0);
		free(job->tmpdir);
		job->tmpdir = NULL;
	}
	if (job->epfd >= 0)
		close(job->epfd);
	if (job->sock >= 0)
		close(job->sock);
	if (job->pidfd >= 0)
		close(job->pidfd);
	job->epfd = job->sock = job->pidfd = -1;
	for (i = 0; i < job->outcome.noutputs; i++) {
		free(job->outcome.outputs[i].path);
		free(job->outcome.outputs[i].data);
	}
	free(job->outcome.outputs);
	shoal_buf_free(&job->outcome.out);
	shoal_buf_free(&job->outcome.err);
	shoal_buf_free(&job->cur_file);
	shoal_buf_free(&job->tx);
	free(job->frame);
	free(job);
}

static int prepare_launch(struct launch_mem *m, struct shoal_sandbox_job *job,
			  const struct shoal_sandbox_spec *s,
			  struct shoal_error *err)
{
	int rc;

	memset(m, 0, sizeof(*m));
	m->l.native = job->native;
	m->l.network_host = s->limits.network_host;
	m->l.session = job->session;
	m->l.workspace = job->native ? "/workspace" : job->tmpdir;
	m->l.outputs_max_bytes = job->files_max_bytes;
	m->l.outputs_max_files = job->files_max;
	m->l.arg_start = g.arg_start;
	m->l.arg_end = g.arg_end;
	m->l.env_start = g.env_start;
	m->l.env_end = g.env_end;
	if (build_argv_env(m, s) != SHOAL_OK || build_spec_copy(m, s) != SHOAL_OK)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	if (job->native) {
		rc = resolve_paths(m, &s->limits, err);
		if (rc != SHOAL_OK)
			return rc;
		scratch_options(&m->l, s->limits.disk);
	}
	plan_rlimits(&m->l, &s->limits, &job->cg);
	if (job->cg.ndirs > 0) {
		m->l.ncg = sb_cgroup_open_procs(&job->cg, m->l.cg_procs);
		if (m->l.ncg < 0) {
			m->l.ncg = 0;
			return shoal_error_errno(err, SHOAL_ESYS,
						 "sandbox: opening the job's cgroup");
		}
	}
	return SHOAL_OK;
}

static int start_job(const struct shoal_sandbox_spec *spec,
		     struct shoal_sandbox_job *job, struct shoal_error *err)
{
	struct launch_mem m;
	int sv[2] = { -1, -1 };
	int rc;

	if (!job->native) {
		rc = make_tmp_workspace(job, err);
		if (rc != SHOAL_OK)
			return rc;
	} else {
		sb_cgroup_create(&job->cg, spec->limits.memory, spec->limits.pids);
	}
	rc = prepare_launch(&m, job, spec, err);
	if (rc == SHOAL_OK &&
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
		rc = shoal_error_errno(err, SHOAL_ESYS, "sandbox: socketpair");
	if (rc == SHOAL_OK) {
		job->start_us = shoal_now_us();
		rc = clone_init(job, &m.l, sv[1], err);
	}
	launch_free(&m);
	if (sv[1] >= 0)
		close(sv[1]);
	job->sock = sv[0];
	if (rc == SHOAL_OK)
		rc = release_init(job, err);
	job->deadline_ms = spec->limits.timeout_ms > 0
		? job->start_us / 1000 + (int64_t)spec->limits.timeout_ms
		: INT64_MAX;
	return rc;
}

int shoal_sandbox_start(const struct shoal_sandbox_spec *spec,
			struct shoal_sandbox_job **out, struct shoal_error *err)
{
	struct shoal_sandbox_job *job;
	int rc;

	(void)shoal_sandbox_reap();
	rc = validate_spec(spec, 0, err);
	if (rc != SHOAL_OK)
		return rc;
	if (spec->limits.backend == SHOAL_SANDBOX_NATIVE) {
		rc = shoal_sandbox_global_init(err);
		if (rc != SHOAL_OK)
			return rc;
	}
	job = job_new(spec);
	if (job == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	rc = start_job(spec, job, err);
	if (rc != SHOAL_OK) {
		job_release(job);
		return rc;
	}
	*out = job;
	return SHOAL_OK;
}

/* ---- frames from the init ---- */

static int proto_error(struct shoal_sandbox_job *job, const char *what)
{
	if (job->proto_err[0] == '\0')
		shoal_strlcpy(job->proto_err, what, sizeof(job->proto_err));
	kill_init(job, KILL_PROTO);
	return -1;
}

static void on_output(struct shoal_sandbox_job *job, struct shoal_buf *b,
		      const char *p, size_t n)
{
	size_t used = job->outcome.out.len + job->outcome.err.len;
	size_t room = used < job->out_max ? job->out_max - used : 0;

	if (n > room) {
		(void)shoal_buf_append(b, p, room);
		job->outcome.truncated = 1;
		kill_init(job, KILL_OUTPUT);
		return;
	}
	if (shoal_buf_append(b, p, n) != SHOAL_OK)
		kill_init(job, KILL_OUTPUT);
}

/* Moves the file being received into the outcome. */
static void finish_file(struct shoal_sandbox_job *job)
{
	struct shoal_sandbox_output *o;

	if (job->outcome.noutputs == 0)
		return;
	o = &job->outcome.outputs[job->outcome.noutputs - 1];
	if (o->data != NULL)
		return;
	o->data = shoal_buf_steal(&job->cur_file, &o->len);
	shoal_sha256_final(&job->cur_hash, o->sha256);
}

static int on_file(struct shoal_sandbox_job *job, uint32_t mode,
		   const char *p, size_t n)
{
	struct shoal_sandbox_outcome *oc = &job->outcome;
	struct shoal_sandbox_output *grown, *o;
	char path[NAME_MAX_LEN + 1];

	if (n == 0 || n > NAME_MAX_LEN || memchr(p, '\0', n) != NULL)
		return proto_error(job, "bad output file name");
	memcpy(path, p, n);
	path[n] = '\0';
	if (!valid_rel_path(path) || oc->noutputs >= job->files_max)
		return proto_error(job, "bad output file");
	finish_file(job);
	grown = realloc(oc->outputs, (oc->noutputs + 1) * sizeof(*grown));
	if (grown == NULL)
		return proto_error(job, "out of memory");
	oc->outputs = grown;
	o = &oc->outputs[oc->noutputs];
	memset(o, 0, sizeof(*o));
	o->path = shoal_strdup(path);
	if (o->path == NULL)
		return proto_error(job, "out of memory");
	o->mode = mode & 0777;
	oc->noutputs++;
	shoal_buf_free(&job->cur_file);
	shoal_buf_init(&job->cur_file, job->files_max_bytes);
	shoal_sha256_init(&job->cur_hash);
	return 0;
}

static int on_data(struct shoal_sandbox_job *job, const char *p, size_t n)
{
	if (job->outcome.noutputs == 0 ||
	    job->outcome.outputs[job->outcome.noutputs - 1].data != NULL)
		return proto_error(job, "file data without a file");
	if (job->files_bytes + n > job->files_max_bytes) {
		job->outputs_over = 1;
		return 0;
	}
	job->files_bytes += n;
	if (shoal_buf_append(&job->cur_file, p, n) != SHOAL_OK)
		return proto_error(job, "out of memory");
	shoal_sha256_update(&job->cur_hash, p, n);
	return 0;
}

static int on_fail(struct shoal_sandbox_job *job, const char *p, size_t n)
{
	size_t i, tn;

	if (n < sizeof(struct sb_fail) || job->got_fail)
		return proto_error(job, "bad FAIL frame");
	memcpy(&job->fail, p, sizeof(job->fail));
	tn = n - sizeof(job->fail);
	if (tn >= sizeof(job->fail_what))
		tn = sizeof(job->fail_what) - 1;
	for (i = 0; i < tn; i++) {
		char c = p[sizeof(job->fail) + i];

		job->fail_what[i] = c >= 0x20 && c < 0x7f ? c : '?';
	}
	job->fail_what[tn] = '\0';
	job->got_fail = 1;
	return 0;
}

static void finish_op(struct shoal_sandbox_job *job);

static int on_frame(struct shoal_sandbox_job *job, const char *f, size_t n)
{
	struct sb_hdr h;
	const char *p = f + sizeof(h);
	size_t pn;

	if (n < sizeof(h))
		return proto_error(job, "short frame");
	memcpy(&h, f, sizeof(h));
	pn = n - sizeof(h);
	if (job->got_done)
		return proto_error(job, "frame after DONE");
	switch (h.type) {
	case SB_F_READY:
		if (pn != sizeof(uint32_t))
			return proto_error(job, "bad READY frame");
		memcpy(&job->workload_pid, p, sizeof(uint32_t));
		return 0;
	case SB_F_OUT:
		on_output(job, &job->outcome.out, p, pn);
		return 0;
	case SB_F_ERR:
		on_output(job, &job->outcome.err, p, pn);
		return 0;
	case SB_F_FAIL:
		return on_fail(job, p, pn);
	case SB_F_EXIT:
		if (pn != sizeof(job->exit) || job->got_exit)
			return proto_error(job, "bad EXIT frame");
		memcpy(&job->exit, p, sizeof(job->exit));
		job->got_exit = 1;
		job->outcome.run_us = (uint64_t)(shoal_now_us() - job->start_us);
		return 0;
	case SB_F_FILE:
		return on_file(job, h.arg, p, pn);
	case SB_F_DATA:
		return on_data(job, p, pn);
	case SB_F_OVER:
		job->outputs_over = 1;
		return 0;
	case SB_F_DONE:
		finish_file(job);
		job->got_done = 1;
		return 0;
	case SB_F_MODE:
		if (!job->session || job->op != OP_READ)
			return proto_error(job, "MODE outside a read");
		job->outcome.mode = h.arg & 07777;
		return 0;
	case SB_F_SPAWNED:
		return proto_error(job, "SPAWNED without its pipes");
	case SB_F_OPDONE:
		if (!job->session || job->op == OP_NONE)
			return proto_error(job, "OPDONE without an operation");
		job->op_errno = h.arg;
		finish_op(job);
		return 0;
	default:
		return proto_error(job, "unknown frame type");
	}
}

/* A SPAWNED frame and the descriptors that came with it (all closed
 * unless they are exactly what a SPAWN's answer holds: three pipes). */
static int on_spawned(struct shoal_sandbox_job *job, const char *f, size_t n,
		      int *fds, size_t nfds)
{
	struct sb_hdr h;
	struct stat st;
	const char *bad = NULL;
	size_t i;

	memcpy(&h, f, sizeof(h));
	if (h.type != SB_F_SPAWNED || n != sizeof(h) + sizeof(uint32_t))
		bad = "descriptors outside a SPAWNED frame";
	else if (job->op != OP_SPAWN || job->got_spawned)
		bad = "SPAWNED outside a spawn";
	else if (nfds != SB_SPAWN_FDS)
		bad = "SPAWNED without its three pipes";
	for (i = 0; bad == NULL && i < nfds; i++)
		if (fstat(fds[i], &st) != 0 || !S_ISFIFO(st.st_mode) ||
		    fcntl(fds[i], F_SETFL, O_NONBLOCK) != 0)
			bad = "SPAWNED with a descriptor that is not a pipe";
	if (bad != NULL) {
		for (i = 0; i < nfds; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		return proto_error(job, bad);
	}
	for (i = 0; i < nfds; i++)
		job->spawn_fds[i] = fds[i];
	memcpy(&job->workload_pid, f + sizeof(h), sizeof(uint32_t));
	job->got_spawned = 1;
	return 0;
}

/* One frame from the socket, and the descriptors it carries (only a
 * SPAWNED frame may): > 0 its length, 0 at EOF, < 0 with errno. */
static ssize_t recv_frame(struct shoal_sandbox_job *job, int *fds,
			  size_t *nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * (SB_SPAWN_FDS + 1))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { job->frame, SB_FRAME_MAX };
	struct msghdr m;
	struct cmsghdr *c;
	ssize_t n;

	memset(&m, 0, sizeof(m));
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = ctl.buf;
	m.msg_controllen = sizeof(ctl.buf);
	*nfds = 0;
	n = recvmsg(job->sock, &m, MSG_TRUNC | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return n;
	for (c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c)) {
		size_t k, cnt;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		cnt = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (k = 0; k < cnt && *nfds <= SB_SPAWN_FDS; k++)
			memcpy(&fds[(*nfds)++], CMSG_DATA(c) + k * sizeof(int),
			       sizeof(int));
	}
	if ((m.msg_flags & MSG_CTRUNC) != 0 && *nfds == 0)
		fds[(*nfds)++] = -1;	/* descriptors were dropped: refused */
	return n;
}

/* Reads what is there; moves to DRAINED at EOF. */
static void read_frames(struct shoal_sandbox_job *job)
{
	int i;

	for (i = 0; i < FRAMES_PER_STEP && job->state == JOB_RUNNING; i++) {
		int fds[SB_SPAWN_FDS + 1];
		size_t nfds;
		ssize_t n = recv_frame(job, fds, &nfds);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n > SB_FRAME_MAX || (nfds > 0 && (n < (ssize_t)sizeof(struct sb_hdr) ||
						      job->killed == KILL_PROTO))) {
			while (nfds > 0)
				if (fds[--nfds] >= 0)
					close(fds[nfds]);
			(void)proto_error(job, n > SB_FRAME_MAX ? "oversized frame"
					  : "unexpected descriptors");
			continue;
		}
		if (n > 0 && nfds > 0) {
			(void)on_spawned(job, job->frame, (size_t)n, fds, nfds);
			continue;
		}
		if (n > 0) {
			if (job->killed != KILL_PROTO)
				(void)on_frame(job, job->frame, (size_t)n);
			continue;
		}
		/* EOF (or a dead socket): the init is gone or going */
		(void)epoll_ctl(job->epfd, EPOLL_CTL_DEL, job->sock, NULL);
		close(job->sock);
		job->sock = -1;
		job->state = JOB_DRAINED;
	}
}

/* ---- the outcome ---- */

static void fmt_size(char *buf, size_t n, uint64_t b)
{
	static const char *const units[] = { "GiB", "MiB", "KiB" };
	static const int shifts[] = { 30, 20, 10 };
	size_t i;

	for (i = 0; i < SHOAL_ARRAY_LEN(units); i++)
		if (b >= ((uint64_t)1 << shifts[i]) &&
		    b % ((uint64_t)1 << shifts[i]) == 0) {
			snprintf(buf, n, "%llu%s",
				 (unsigned long long)(b >> shifts[i]), units[i]);
			return;
		}
	snprintf(buf, n, "%llu bytes", (unsigned long long)b);
}

static void fmt_ms(char *buf, size_t n, uint64_t ms)
{
	if (ms % 1000 == 0)
		snprintf(buf, n, "%llus", (unsigned long long)(ms / 1000));
	else if (ms > 1000)
		snprintf(buf, n, "%.1fs", (double)ms / 1000.0);
	else
		snprintf(buf, n, "%llums", (unsigned long long)ms);
}

static void set_status(struct shoal_sandbox_job *job, int status,
		       const char *fmt, const char *arg)
{
	job->outcome.status = status;
	snprintf(job->outcome.reason, sizeof(job->outcome.reason), fmt, arg);
}

static int cmp_output(const void *a, const void *b)
{
	const struct shoal_sandbox_output *x = a, *y = b;

	return strcmp(x->path, y->path);
}

static void outcome_from_fail(struct shoal_sandbox_job *job)
{
	struct shoal_sandbox_outcome *oc = &job->outcome;

	oc->status = SHOAL_STATUS_ERROR;
	if (job->fail.kind == SB_FAIL_EXEC && job->fail.err == ENOENT)
		snprintf(oc->reason, sizeof(oc->reason), "command not found: %s",
			 job->argv0);
	else if (job->fail.kind == SB_FAIL_EXEC)
		snprintf(oc->reason, sizeof(oc->reason), "cannot execute %s: %s",
			 job->argv0, strerror(job->fail.err));
	else
		snprintf(oc->reason, sizeof(oc->reason),
			 "sandbox set-up failed: %s: %s", job->fail_what,
			 strerror(job->fail.err));
}

/* The limit a failed workload most likely hit, or 0. */
static int limit_hit(struct shoal_sandbox_job *job, int oom, int pids_max)
{
	const struct shoal_wire_sandbox *lim = &job->lim;
	int sig = WIFSIGNALED(job->exit.wstatus) ? WTERMSIG(job->exit.wstatus) : 0;
	char num[32];

	if (oom) {
		fmt_size(num, sizeof(num), lim->memory);
		set_status(job, SHOAL_STATUS_LIMIT, "memory limit %s reached", num);
	} else if (lim->cpu_time_ms > 0 && (sig == SIGXCPU ||
		   (sig == SIGKILL && job->exit.cpu_us / 1000 >= lim->cpu_time_ms))) {
		fmt_ms(num, sizeof(num), lim->cpu_time_ms);
		set_status(job, SHOAL_STATUS_LIMIT, "cpu time limit %s reached", num);
	} else if (sig == SIGXFSZ || (job->exit.disk_full && lim->disk > 0)) {
		fmt_size(num, sizeof(num), lim->disk);
		set_status(job, SHOAL_STATUS_LIMIT,
			   "disk limit %s reached (workspace full)", num);
	} else if (pids_max) {
		snprintf(num, sizeof(num), "%lu", (unsigned long)lim->pids);
		set_status(job, SHOAL_STATUS_LIMIT, "process limit %s reached", num);
	} else {
		return 0;
	}
	return 1;
}

static void outcome_from_exit(struct shoal_sandbox_job *job, int oom,
			      int pids_max)
{
	struct shoal_sandbox_outcome *oc = &job->outcome;
	int st = job->exit.wstatus;
	char num[48];

	if (WIFEXITED(st))
		oc->exit_code = WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		oc->term_signal = WTERMSIG(st);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
		oc->status = SHOAL_STATUS_OK;
	} else if (!limit_hit(job, oom, pids_max)) {
		if (WIFSIGNALED(st)) {
			snprintf(num, sizeof(num), "%d (%s)", WTERMSIG(st),
				 sigabbrev_np(WTERMSIG(st)) ? sigabbrev_np(WTERMSIG(st))
							     : "?");
			set_status(job, SHOAL_STATUS_FAILED, "killed by signal %s", num);
		} else {
			snprintf(num, sizeof(num), "%d", WEXITSTATUS(st));
			set_status(job, SHOAL_STATUS_FAILED, "exited with code %s", num);
		}
	}
	if (oc->status == SHOAL_STATUS_OK && job->outputs_over) {
		fmt_size(num, sizeof(num), job->files_max_bytes);
		snprintf(oc->reason, sizeof(oc->reason),
			 "output files exceeded %s or %u files", num, job->files_max);
		oc->status = SHOAL_STATUS_LIMIT;
	}
}

static void build_outcome(struct shoal_sandbox_job *job, const siginfo_t *si)
{
	struct shoal_sandbox_outcome *oc = &job->outcome;
	unsigned long long ooms, pids_hits;
	int oom, pids_max;
	char num[32];

	sb_cgroup_events(&job->cg, &ooms, &pids_hits);
	oom = ooms > job->oom0;
	pids_max = pids_hits > job->pids0;
	if (oc->run_us == 0)
		oc->run_us = (uint64_t)(shoal_now_us() - job->start_us);
	finish_file(job);
	if (oc->noutputs > 1)
		qsort(oc->outputs, oc->noutputs, sizeof(*oc->outputs), cmp_output);
	switch (job->killed) {
	case KILL_CANCEL:
		set_status(job, SHOAL_STATUS_CANCELLED, "%s", "cancelled");
		return;
	case KILL_OUTPUT:
		fmt_size(num, sizeof(num), job->out_max);
		set_status(job, SHOAL_STATUS_LIMIT, "output exceeded %s", num);
		oc->truncated = 1;
		return;
	case KILL_TIMEOUT:
		fmt_ms(num, sizeof(num), job->op_timeout_ms);
		set_status(job, SHOAL_STATUS_TIMEOUT, "timed out after %s", num);
		return;
	case KILL_PROTO:
		set_status(job, SHOAL_STATUS_ERROR, "sandbox protocol error: %s",
			   job->proto_err);
		return;
	case KILL_NONE:
		break;
	}
	if (job->got_fail) {
		outcome_from_fail(job);
	} else if (job->got_exit) {
		outcome_from_exit(job, oom, pids_max);
	} else if (oom) {
		fmt_size(num, sizeof(num), job->lim.memory);
		set_status(job, SHOAL_STATUS_LIMIT, "memory limit %s reached", num);
	} else if (si != NULL) {
		snprintf(oc->reason, sizeof(oc->reason),
			 "sandbox init ended early (%s %d)",
			 si->si_code == CLD_EXITED ? "exit code" : "signal",
			 si->si_status);
		oc->status = SHOAL_STATUS_ERROR;
	} else {
		set_status(job, SHOAL_STATUS_ERROR, "%s",
			   "sandbox init ended without a result");
	}
}

/* ---- reaping ---- */

/* A freed job whose init had not exited yet (the kernel tears its mount
 * and network namespaces down in the exiting init, which takes an RCU
 * grace period or two): reaped later, then its cgroup and workspace are
 * removed.  Per thread, like the jobs themselves. */
struct pending {
	struct pending *next;
	int pidfd;
	struct sb_cgroup cg;
	char *tmpdir;
};

static _Thread_local struct pending *pending_list;

/* 1 when the init behind pidfd has been reaped (now or before). */
static int reap_now(int pidfd, siginfo_t *si)
{
	memset(si, 0, sizeof(*si));
	if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, si, WEXITED | WNOHANG) != 0)
		return errno == ECHILD;	/* SIGCHLD ignored: the kernel reaped */
	return si->si_pid != 0;
}

static void remove_remains(struct sb_cgroup *cg, char **tmpdir)
{
	if (cg->ndirs > 0)
		sb_cgroup_destroy(cg);
	if (*tmpdir != NULL) {
		remove_tree_at(AT_FDCWD, *tmpdir, 0);
		free(*tmpdir);
		*tmpdir = NULL;
	}
}

size_t shoal_sandbox_reap(void)
{
	struct pending **pp = &pending_list;
	size_t left = 0;

	while (*pp != NULL) {
		struct pending *p = *pp;
		siginfo_t si;

		if (!reap_now(p->pidfd, &si)) {
			left++;
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		close(p->pidfd);
		remove_remains(&p->cg, &p->tmpdir);
		free(p);
	}
	return left;
}

/* Hands the job's init, cgroup and workspace to the pending list. */
static void defer_reap(struct shoal_sandbox_job *job)
{
	struct pending *p = calloc(1, sizeof(*p));

	if (p == NULL) {
		siginfo_t si;

		/* no memory for bookkeeping: wait for it here instead */
		while (waitid((idtype_t)P_PIDFD, (id_t)job->pidfd, &si, WEXITED) != 0 &&
		       errno == EINTR)
			;
		remove_remains(&job->cg, &job->tmpdir);
		return;
	}
	p->pidfd = job->pidfd;
	p->cg = job->cg;
	p->tmpdir = job->tmpdir;
	job->pidfd = -1;
	job->cg.ndirs = 0;
	job->tmpdir = NULL;
	p->next = pending_list;
	pending_list = p;
}

/* The job is over when the init said DONE (it has reaped every process
 * of the sandbox) and closed the socket, or, without DONE (killed,
 * crashed), when the init itself has exited: its pid namespace is then
 * empty. */
static int try_finish(struct shoal_sandbox_job *job)
{
	siginfo_t si;

	job->reaped = reap_now(job->pidfd, &si);
	if (!job->reaped && !job->got_done)
		return 0;	/* the pidfd will wake the caller */
	/* a session that dies between commands: the outcome is the init's
	 * end, not the last command's exit */
	if (job->session && job->op != OP_EXEC && job->op != OP_OPEN)
		job->got_exit = job->got_fail = 0;
	build_outcome(job, job->reaped ? &si : NULL);
	if (job->reaped)
		remove_remains(&job->cg, &job->tmpdir);
	job->state = JOB_FINISHED;
	return 1;
}

/* ---- sessions ----
 *
 * A session is a job whose init, after staging the workspace, serves
 * operations instead of running one command: EXEC (a command, run to its
 * end; every process it started dies when it exits), WRITE, READ, LIST
 * and REMOVE of workspace files, and SPAWN (added: a process that stays,
 * an MCP stdio server; its pipes come back with the SPAWNED frame, as
 * SCM_RIGHTS, and are checked to be pipes before they are kept).  One
 * operation at a time: step returns 1 when it has finished, and the
 * outcome is its result until the next one starts (a READ's also has the
 * file's mode, from SB_F_MODE).  A timeout,
 * the output cap or a cancel kill the command (SB_C_KILL), not the
 * sandbox; an init that does not answer within KILL_GRACE_MS is killed, and
 * the session is over (FINISHED: further operations fail with ECLOSED).
 *
 *   OPEN ──OPDONE──▶ idle ──exec/write/read/list/remove/spawn──▶ busy
 *     │               ▲                                          │
 *     │               └───────────────── OPDONE ─────────────────┘
 *     └──────── the init exits or is killed (any state) ──▶ FINISHED
 */
#define KILL_GRACE_MS 2000

static void tx_arm(struct shoal_sandbox_job *job, int on)
{
	struct epoll_event ev;

	if (job->tx_waiting == on || job->sock < 0)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | (on ? EPOLLOUT : 0);
	ev.data.fd = job->sock;
	if (epoll_ctl(job->epfd, EPOLL_CTL_MOD, job->sock, &ev) == 0)
		job->tx_waiting = on;
}

/* Sends queued frames until the socket is full; the job's fd then also
 * waits for room (EPOLLOUT). */
static void tx_flush(struct shoal_sandbox_job *job)
{
	while (job->sock >= 0 && job->tx_off < job->tx.len) {
		uint32_t n;
		ssize_t w;

		memcpy(&n, job->tx.data + job->tx_off, sizeof(n));
		w = send(job->sock, job->tx.data + job->tx_off + sizeof(n), n,
			 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == ENOBUFS)) {
			tx_arm(job, 1);
			return;
		}
		if (w < 0)
			break;		/* the init is gone: EOF follows */
		job->tx_off += sizeof(n) + n;
	}
	shoal_buf_reset(&job->tx);
	job->tx_off = 0;
	tx_arm(job, 0);
}

static int tx_queue(struct shoal_sandbox_job *job, uint32_t type, uint32_t arg,
		    const void *a, size_t an)
{
	struct sb_hdr h;
	uint32_t n = (uint32_t)(sizeof(h) + an);

	if (an > SB_PAYLOAD_MAX)
		return SHOAL_ETOOBIG;
	if (shoal_buf_reserve(&job->tx, sizeof(n) + n) != SHOAL_OK)
		return SHOAL_ENOMEM;
	h.type = type;
	h.arg = arg;
	(void)shoal_buf_append(&job->tx, &n, sizeof(n));
	(void)shoal_buf_append(&job->tx, &h, sizeof(h));
	(void)shoal_buf_append(&job->tx, a, an);
	return SHOAL_OK;
}

static void kill_command(struct shoal_sandbox_job *job, enum kill_reason why)
{
	job->killed = why;
	(void)tx_queue(job, SB_C_KILL, 0, NULL, 0);
	tx_flush(job);
	job->deadline_ms = shoal_now_ms() + KILL_GRACE_MS;
}

/* The operation is over: its outcome. */
static void finish_op(struct shoal_sandbox_job *job)
{
	static const char *const verbs[] = { "", "open", "exec", "write", "read",
					     "list", "remove", "spawn" };
	struct shoal_sandbox_outcome *oc = &job->outcome;
	enum session_op op = job->op;
	char num[32];

	job->op = OP_NONE;
	job->deadline_ms = INT64_MAX;
	if (op == OP_EXEC) {
		build_outcome(job, NULL);
	} else if (op == OP_SPAWN && job->got_fail) {
		outcome_from_fail(job);
	} else if (op == OP_SPAWN && !job->got_spawned) {
		oc->status = SHOAL_STATUS_ERROR;
		snprintf(oc->reason, sizeof(oc->reason),
			 "cannot start %s: the sandbox refused (%s)", job->argv0,
			 strerror(job->op_errno ? (int)job->op_errno : EINVAL));
	} else if (job->op_errno != 0) {
		oc->status = SHOAL_STATUS_ERROR;
		oc->op_errno = (int)job->op_errno;
		snprintf(oc->reason, sizeof(oc->reason), "%s %s: %s", verbs[op],
			 job->op_path[0] ? job->op_path : ".",
			 strerror((int)job->op_errno));
	} else if (job->outputs_over && op == OP_READ) {
		fmt_size(num, sizeof(num), job->files_max_bytes);
		oc->status = SHOAL_STATUS_LIMIT;
		snprintf(oc->reason, sizeof(oc->reason), "read %s: larger than %s",
			 job->op_path, num);
	} else if (job->outputs_over) {
		oc->status = SHOAL_STATUS_LIMIT;
		snprintf(oc->reason, sizeof(oc->reason),
			 "list %s: more than %u entries",
			 job->op_path[0] ? job->op_path : ".", job->files_max);
	} else {
		oc->status = SHOAL_STATUS_OK;
	}
	job->killed = KILL_NONE;
}

static int session_step(struct shoal_sandbox_job *job, int64_t now_ms)
{
	tx_flush(job);
	if (job->state == JOB_RUNNING)
		read_frames(job);
	if (job->state == JOB_RUNNING && now_ms >= job->deadline_ms) {
		if (job->op == OP_EXEC && job->killed == KILL_NONE) {
			kill_command(job, KILL_TIMEOUT);
		} else {
			/* no answer to KILL: the sandbox goes */
			if (job->killed == KILL_NONE)
				job->killed = KILL_TIMEOUT;
			job->op = OP_NONE;
			(void)sb_pidfd_send_signal(job->pidfd, SIGKILL);
			job->deadline_ms = INT64_MAX;
		}
	}
	if (job->state == JOB_DRAINED)
		return try_finish(job);
	return job->op == OP_NONE && job->state == JOB_RUNNING;
}

/* Starts an operation: the session must be idle; the outcome is reset. */
static int begin_op(struct shoal_sandbox_job *job, enum session_op op,
		    const char *path, struct shoal_error *err)
{
	struct shoal_sandbox_outcome *oc = &job->outcome;

	if (!job->session)
		return shoal_error_set(err, SHOAL_EINVAL, "sandbox: not a session");
	if (job->state != JOB_RUNNING)
		return shoal_error_set(err, SHOAL_ECLOSED,
				       "sandbox: the session has ended: %s",
				       oc->reason);
	if (job->op != OP_NONE)
		return shoal_error_set(err, SHOAL_EAGAIN,
				       "sandbox: the session is busy");
	shoal_buf_reset(&oc->out);
	shoal_buf_reset(&oc->err);
	oc->status = SHOAL_STATUS_OK;
	oc->exit_code = oc->term_signal = oc->truncated = 0;
	oc->reason[0] = '\0';
	oc->run_us = 0;
	oc->mode = 0;
	oc->op_errno = 0;
	job->got_exit = job->got_fail = job->outputs_over = 0;
	close_spawned(job);	/* a previous spawn's, never taken */
	job->fail_what[0] = '\0';
	job->killed = KILL_NONE;
	job->op_errno = 0;
	job->workload_pid = 0;
	shoal_strlcpy(job->op_path, path != NULL ? path : "", sizeof(job->op_path));
	sb_cgroup_events(&job->cg, &job->oom0, &job->pids0);
	job->start_us = shoal_now_us();
	job->deadline_ms = INT64_MAX;
	/* stdout and stderr share the output cap; a read's data (on out)
	 * the files cap */
	job->out_max = op == OP_EXEC ? (size_t)(job->lim.max_output ? job->lim.max_output
				       : SHOAL_SANDBOX_DEFAULT_MAX_OUTPUT)
		       : job->files_max_bytes + 1;
	oc->out.max = oc->err.max = job->out_max;
	job->op = op;
	return SHOAL_OK;
}

int shoal_sandbox_session_open(const struct shoal_sandbox_spec *spec,
			       struct shoal_sandbox_job **out,
			       struct shoal_error *err)
{
	struct shoal_sandbox_job *job;
	int rc;

	(void)shoal_sandbox_reap();
	rc = validate_spec(spec, 1, err);
	if (rc != SHOAL_OK)
		return rc;
	if (spec->limits.backend == SHOAL_SANDBOX_NATIVE) {
		rc = shoal_sandbox_global_init(err);
		if (rc != SHOAL_OK)
			return rc;
	}
	job = job_new(spec);
	if (job == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	job->session = 1;
	job->op = OP_OPEN;
	rc = start_job(spec, job, err);
	if (rc != SHOAL_OK) {
		job_release(job);
		return rc;
	}
	job->deadline_ms = INT64_MAX;	/* timeouts are per command */
	*out = job;
	return SHOAL_OK;
}

/* argv (and, for a SPAWN, env: KEY=VALUE) as one payload: the strings,
 * each NUL-terminated; *buf is the caller's to free. */
static int pack_argv(const char *const *argv, size_t argc,
		     const char *const *env, size_t nenv, char **buf,
		     size_t *len, struct shoal_error *err)
{
	size_t i, total = 0;

	if (argc == 0 || argc > SB_EXEC_ARGC_MAX || argv == NULL || argv[0] == NULL ||
	    argv[0][0] == '\0')
		return shoal_error_set(err, SHOAL_EINVAL,
				       "sandbox: exec needs 1 to %d arguments",
				       SB_EXEC_ARGC_MAX);
	for (i = 0; i < argc; i++) {
		if (argv[i] == NULL)
			return shoal_error_set(err, SHOAL_EINVAL,
					       "sandbox: argv[%zu] is NULL", i);
		total += strlen(argv[i]) + 1;
	}
	for (i = 0; i < nenv; i++) {
		if (env[i] == NULL || env[i][0] == '=' || strchr(env[i], '=') == NULL)
			return shoal_error_set(err, SHOAL_EINVAL, "sandbox: env "
					       "entry %zu is not KEY=VALUE", i);
		total += strlen(env[i]) + 1;
	}
	if (total > SB_PAYLOAD_MAX)
		return shoal_error_set(err, SHOAL_ETOOBIG,
				       "sandbox: the command is %zu bytes, over %d",
				       total, SB_PAYLOAD_MAX);
	*buf = malloc(total);
	if (*buf == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	for (i = 0, total = 0; i < argc + nenv; i++) {
		const char *a = i < argc ? argv[i] : env[i - argc];
		size_t n = strlen(a) + 1;

		memcpy(*buf + total, a, n);
		total += n;
	}
	*len = total;
	return SHOAL_OK;
}

/* Starts an EXEC or a SPAWN of argv. */
static int argv_op(struct shoal_sandbox_job *job, enum session_op op,
		   uint32_t type, const char *const *argv, size_t argc,
		   const char *const *env, size_t nenv, struct shoal_error *err)
{
	char *buf = NULL;
	size_t len = 0;
	int rc = pack_argv(argv, argc, env, nenv, &buf, &len, err);

	if (rc == SHOAL_OK)
		rc = begin_op(job, op, NULL, err);
	if (rc != SHOAL_OK) {
		free(buf);
		return rc;
	}
	rc = tx_queue(job, type, (uint32_t)argc, buf, len);
	free(buf);
	if (rc != SHOAL_OK) {
		job->op = OP_NONE;
		return shoal_error_set(err, rc, "sandbox: queueing the command");
	}
	shoal_strlcpy(job->argv0, argv[0], sizeof(job->argv0));
	return SHOAL_OK;
}

int shoal_sandbox_session_exec(struct shoal_sandbox_job *job,
			       const char *const *argv, size_t argc,
			       uint64_t timeout_ms, struct shoal_error *err)
{
	int rc = argv_op(job, OP_EXEC, SB_C_EXEC, argv, argc, NULL, 0, err);

	if (rc != SHOAL_OK)
		return rc;
	job->op_timeout_ms = timeout_ms ? timeout_ms : job->lim.timeout_ms;
	if (job->op_timeout_ms > 0)
		job->deadline_ms = shoal_now_ms() + (int64_t)job->op_timeout_ms;
	tx_flush(job);
	return SHOAL_OK;
}

int shoal_sandbox_session_spawn(struct shoal_sandbox_job *job,
				const char *const *argv, size_t argc,
				const char *const *env, size_t nenv,
				struct shoal_error *err)
{
	int rc = argv_op(job, OP_SPAWN, SB_C_SPAWN, argv, argc, env, nenv, err);

	if (rc != SHOAL_OK)
		return rc;
	/* the init answers at once (the exec is synchronous); one that
	 * does not ends the session, as a KILL without answer does */
	job->deadline_ms = shoal_now_ms() + KILL_GRACE_MS * 5;
	tx_flush(job);
	return SHOAL_OK;
}

int shoal_sandbox_session_take_spawned(struct shoal_sandbox_job *job,
				       int fds[3], int *pid)
{
	int i;

	if (!job->got_spawned)
		return SHOAL_ENOTFOUND;
	for (i = 0; i < SB_SPAWN_FDS; i++) {
		fds[i] = job->spawn_fds[i];
		job->spawn_fds[i] = -1;
	}
	if (pid != NULL)
		*pid = (int)job->workload_pid;
	job->got_spawned = 0;
	return SHOAL_OK;
}

/* A workspace path for a file operation ("" = the workspace itself). */
static int check_op_path(const char *path, int allow_root,
			 struct shoal_error *err)
{
	if (path != NULL && ((allow_root && path[0] == '\0') ||
			     (valid_rel_path(path) && strlen(path) < 1024)))
		return SHOAL_OK;
	return shoal_error_set(err, SHOAL_EINVAL,
			       "sandbox: \"%s\" is not a relative path inside "
			       "the workspace", path != NULL ? path : "(null)");
}

int shoal_sandbox_session_write(struct shoal_sandbox_job *job, const char *path,
				const void *data, size_t len, uint32_t mode,
				struct shoal_error *err)
{
	const char *p = data;
	size_t off;
	int rc = check_op_path(path, 0, err);

	if (rc != SHOAL_OK)
		return rc;
	if (len > job->files_max_bytes || (data == NULL && len > 0))
		return shoal_error_set(err, SHOAL_ETOOBIG,
				       "sandbox: %zu bytes for %s, over the limit of %zu",
				       len, path, job->files_max_bytes);
	rc = begin_op(job, OP_WRITE, path, err);
	if (rc != SHOAL_OK)
		return rc;
	rc = tx_queue(job, SB_C_WRITE, mode & 0777, path, strlen(path));
	for (off = 0; rc == SHOAL_OK && off < len; off += SB_PAYLOAD_MAX)
		rc = tx_queue(job, SB_C_DATA, 0, p + off,
			      len - off < SB_PAYLOAD_MAX ? len - off : SB_PAYLOAD_MAX);
	if (rc == SHOAL_OK)
		rc = tx_queue(job, SB_C_END, 0, NULL, 0);
	if (rc != SHOAL_OK) {
		shoal_buf_reset(&job->tx);
		job->op = OP_NONE;
		return shoal_error_set(err, rc, "sandbox: out of memory");
	}
	tx_flush(job);
	return SHOAL_OK;
}

static int simple_op(struct shoal_sandbox_job *job, enum session_op op,
		     uint32_t type, const char *path, struct shoal_error *err)
{
	int rc = check_op_path(path, op == OP_LIST, err);

	if (rc == SHOAL_OK)
		rc = begin_op(job, op, path, err);
	if (rc != SHOAL_OK)
		return rc;
	rc = tx_queue(job, type, 0, path, strlen(path));
	if (rc != SHOAL_OK) {
		job->op = OP_NONE;
		return shoal_error_set(err, rc, "sandbox: out of memory");
	}
	tx_flush(job);
	return SHOAL_OK;
}

int shoal_sandbox_session_read(struct shoal_sandbox_job *job, const char *path,
			       struct shoal_error *err)
{
	return simple_op(job, OP_READ, SB_C_READ, path, err);
}

int shoal_sandbox_session_list(struct shoal_sandbox_job *job, const char *path,
			       struct shoal_error *err)
{
	return simple_op(job, OP_LIST, SB_C_LIST, path, err);
}

int shoal_sandbox_session_remove(struct shoal_sandbox_job *job, const char *path,
				 struct shoal_error *err)
{
	return simple_op(job, OP_REMOVE, SB_C_REMOVE, path, err);
}

int shoal_sandbox_session_ended(const struct shoal_sandbox_job *job)
{
	return job->state == JOB_FINISHED;
}

/* ---- the rest of the public API ---- */

int shoal_sandbox_job_fd(const struct shoal_sandbox_job *job)
{
	return job->epfd;
}

int64_t shoal_sandbox_job_deadline(const struct shoal_sandbox_job *job)
{
	return job->deadline_ms;
}

int shoal_sandbox_job_step(struct shoal_sandbox_job *job, int64_t now_ms)
{
	if (job->state == JOB_FINISHED)
		return 1;
	if (job->session)
		return session_step(job, now_ms);
	if (job->state == JOB_RUNNING)
		read_frames(job);
	if (job->state != JOB_FINISHED && now_ms >= job->deadline_ms)
		kill_init(job, KILL_TIMEOUT);
	/* DONE is the last frame: no need to wait for EOF (one wake-up
	 * less; the socket is closed with the job) */
	if (job->state == JOB_DRAINED || job->got_done)
		return try_finish(job);
	return 0;
}

void shoal_sandbox_job_kill(struct shoal_sandbox_job *job)
{
	if (job->session && job->op != OP_EXEC)
		return;		/* file operations are short; nothing to kill */
	if (job->state != JOB_FINISHED)
		kill_init(job, KILL_CANCEL);
}

const struct shoal_sandbox_outcome *
shoal_sandbox_job_outcome(const struct shoal_sandbox_job *job)
{
	return &job->outcome;
}

void shoal_sandbox_job_free(struct shoal_sandbox_job *job)
{
	siginfo_t si;

	if (job == NULL)
		return;
	if (job->pidfd >= 0 && !job->reaped) {
		if (job->state != JOB_FINISHED || job->session) {
			job->session = 0;	/* end the sandbox, not a command */
			kill_init(job, KILL_CANCEL);
		}
		if (reap_now(job->pidfd, &si))
			remove_remains(&job->cg, &job->tmpdir);
		else
			defer_reap(job);
	}
	job_release(job);
	(void)shoal_sandbox_reap();
}

/* ---- the host probe: one real sandbox, up to the execve ---- */

static int probe_sandbox(struct shoal_error *err)
{
	static const char *const argv[] = { "/.shoal-probe-does-not-exist" };
	struct shoal_sandbox_spec spec;
	struct shoal_sandbox_job *job = NULL;
	const struct shoal_sandbox_outcome *oc;
	int64_t give_up = shoal_now_ms() + 10000;
	int rc;

	memset(&spec, 0, sizeof(spec));
	spec.argv = argv;
	spec.argc = 1;
	spec.limits.backend = SHOAL_SANDBOX_NATIVE;
	spec.limits.disk = 1 << 20;
	spec.limits.memory = 64 << 20;
	spec.limits.pids = 8;
	job = job_new(&spec);
	if (job == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	rc = start_job(&spec, job, err);
	if (rc != SHOAL_OK) {
		job_release(job);
		return shoal_error_prefix(err, "sandbox host probe");
	}
	while (shoal_sandbox_job_step(job, shoal_now_ms()) == 0) {
		struct pollfd p = { job->epfd, POLLIN, 0 };

		if (shoal_now_ms() > give_up) {
			shoal_sandbox_job_free(job);
			return shoal_error_set(err, SHOAL_EUNSUPPORTED,
					       "sandbox host probe: no answer in 10s");
		}
		(void)poll(&p, 1, 100);
	}
	oc = shoal_sandbox_job_outcome(job);
	rc = SHOAL_OK;
	if (oc->status != SHOAL_STATUS_ERROR ||
	    strncmp(oc->reason, "command not found", 17) != 0)
		rc = shoal_error_set(err, SHOAL_EUNSUPPORTED,
				     "sandbox host probe: %s", oc->reason);
	shoal_sandbox_job_free(job);
	return rc;
}
