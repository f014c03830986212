/* sandbox_int.h - what the sandbox_*.c files share and nobody else sees:
 * the launch record handed from the worker to the sandbox's init, the
 * framed protocol between them, and the seccomp, cgroup and mount helpers.
 *
 * Process tree of one native job (a session is the same, its init serving
 * operations one after another instead of running one command):
 *
 *   worker (caller of shoal_sandbox_start)
 *     └─ init   pid 1 of new user/mount/pid/net/ipc/uts/cgroup namespaces;
 *          │    our own code (a fork of the worker, never exec'd); builds
 *          │    the file system, gives up its capabilities and installs
 *          │    the seccomp filter, runs the workload, relays its output,
 *          │    reaps, collects `outputs`, reports over a SOCK_SEQPACKET
 *          │    socketpair, exits.  Killing it kills the pid namespace.
 *          ├─ workload  pid 2 (vfork of the init): rlimits, execve.
 *          └─ spawned   a session's long-lived processes (MCP stdio
 *                       servers, SB_C_SPAWN), each leading its own
 *                       session (setsid), its pipes owned by the worker;
 *                       they outlive the operations that a command's
 *                       processes do not.
 *
 * Everything the init needs is in struct sb_launch, built by the worker
 * before clone: the child gets a copy-on-write snapshot, so it never
 * allocates (the worker may be threaded and ASan-instrumented). */
#ifndef SHOAL_SANDBOX_INT_H
#define SHOAL_SANDBOX_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "common/err.h"
#include "pool/sandbox.h"

/* Inside the sandbox every process runs as this uid/gid ("sandbox"). */
#define SB_UID 1000
#define SB_GID 1000

/* The largest frame on the socketpair, header included. */
#define SB_FRAME_MAX (32 * 1024)
#define SB_PAYLOAD_MAX (SB_FRAME_MAX - 8)

/* Frames, init -> worker.  Every frame starts with struct sb_hdr; the
 * payload follows.  SOCK_SEQPACKET keeps frame boundaries. */
enum sb_frame {
	SB_F_READY = 1,	/* workload started: u32 workload pid (host pid
			 * for backend none, else the namespace pid) */
	SB_F_OUT = 2,	/* stdout bytes */
	SB_F_ERR = 3,	/* stderr bytes */
	SB_F_FAIL = 4,	/* struct sb_fail + text: set-up or exec failed */
	SB_F_EXIT = 5,	/* struct sb_exit: the workload's end */
	SB_F_FILE = 6,	/* u32 mode + relative path: an output file begins */
	SB_F_DATA = 7,	/* bytes of the current output file */
	SB_F_OVER = 8,	/* a cap was hit: outputs (payload u32 files, u64
			 * bytes), a session's read or list (no payload) */
	SB_F_DONE = 9,	/* nothing follows; the init exits */
	SB_F_OPDONE = 10, /* session: the operation ended; arg = its errno */
	SB_F_MODE = 11,	/* session READ (added): arg = the file's permission
			 * bits, before its OUT frames */
	SB_F_SPAWNED = 12, /* session SPAWN (added): u32 pid of the server;
			    * carries (SCM_RIGHTS) exactly SB_SPAWN_FDS
			    * descriptors: its stdin's write end, its
			    * stdout's and its stderr's read ends */
};

/* Frames, worker -> init. */
enum sb_cmd {
	SB_C_GO = 1,	/* uid/gid maps are in place: proceed */
	/* a session's operations, one at a time, each answered by frames
	 * and a final SB_F_OPDONE: */
	SB_C_EXEC = 2,	/* arg = argc; payload: the NUL-terminated args.
			 * Answer: READY, OUT/ERR..., EXIT or FAIL(EXEC) */
	SB_C_KILL = 3,	/* kill the running command and all it started */
	SB_C_WRITE = 4,	/* arg = mode; payload: path; then DATA..., END */
	SB_C_DATA = 5,	/* bytes of the file being written */
	SB_C_END = 6,	/* the file is complete */
	SB_C_READ = 7,	/* payload: path.  Answer: OUT... (OVER past the cap) */
	SB_C_LIST = 8,	/* payload: path ("" = workspace).  Answer: OUT
			 * lines "TYPE SIZE PATH\n", TYPE in f d l o */
	SB_C_REMOVE = 9, /* added: payload: path.  Unlinks a non-folder */
	SB_C_SPAWN = 10, /* added: arg = argc; payload: the arguments as
			  * EXEC's, then KEY=VALUE strings (NUL-terminated)
			  * added to the session's environment or replacing
			  * its variables.  Starts a long-lived process (an
			  * MCP stdio server) in the session, which outlives
			  * the operation.  Answer: SPAWNED or FAIL, then
			  * OPDONE (arg EINVAL: a malformed payload) */
};

/* A session's spawned processes (SB_C_SPAWN): at most this many at once,
 * and the descriptors each one's SPAWNED frame carries. */
#define SB_SPAWN_MAX 16
#define SB_SPAWN_FDS 3
#define SB_SPAWN_ENV_MAX 4096	/* variables a spawned process gets */

struct sb_hdr {
	uint32_t type;	/* enum sb_frame / enum sb_cmd */
	uint32_t arg;	/* small per-type argument (SB_F_FILE: mode) */
};

enum sb_fail_kind {
	SB_FAIL_SETUP = 1,	/* building the sandbox failed */
	SB_FAIL_EXEC = 2,	/* execve of argv[0] failed */
};

struct sb_fail {
	uint32_t kind;		/* enum sb_fail_kind */
	int32_t err;		/* errno */
	/* followed by a short NUL-free text: what was being done */
};

/* A session's EXEC: at most this many arguments, all of them (with their
 * NULs) in one frame. */
#define SB_EXEC_ARGC_MAX 1024

struct sb_exit {
	int32_t wstatus;	/* from wait4 */
	uint32_t disk_full;	/* the scratch file system had no room left */
	uint64_t cpu_us;	/* user + system time of the workload */
	uint64_t run_us;	/* exec to exit, measured inside */
};

/* A read-only bind of a host path (rootfs: host; readonly_paths). */
struct sb_bind {
	const char *src;	/* host path without symlinks */
	const char *dst;	/* absolute path inside */
	int is_dir;
};

/* One step of building the sandbox's /etc and /dev on the host layout,
 * decided once in global_init (sandbox_mounts.c). */
enum sb_op_kind {
	SB_OP_MKDIR = 1,	/* path */
	SB_OP_FILE = 2,		/* path, data, len: a copied or generated file */
	SB_OP_LINK = 3,		/* path -> data (symlink target) */
	SB_OP_BIND = 4,		/* bind src onto path, read-only */
	SB_OP_DEV = 5,		/* bind host device node src onto path */
};

struct sb_op {
	int kind;		/* enum sb_op_kind */
	const char *path;	/* absolute, inside */
	const char *src;	/* host path (BIND, DEV) */
	const char *data;	/* FILE contents or LINK target */
	size_t len;
	int is_dir;		/* BIND: a folder */
};

struct sb_rlim {
	int resource;
	struct rlimit lim;
};

/* Everything the init and the workload need; built by the worker before
 * clone and read-only afterwards (the child owns a snapshot). */
struct sb_launch {
	int native;			/* 0: backend none */
	int network_host;
	int session;			/* after staging, serve operations */
	const struct shoal_sandbox_spec *spec;	/* the caller's, snapshot */
	char **argv;			/* NULL-terminated */
	char **envp;			/* NULL-terminated, exactly spec->env */
	const char *path;		/* PATH from envp, or a default */

	/* native: the file system */
	const char *rootfs_dir;		/* NULL: the host layout */
	const struct sb_bind *binds;	/* readonly_paths */
	size_t nbinds;
	char scratch_opts[128];		/* tmpfs options of the scratch fs */
	const char *workspace;		/* "/workspace"; backend none: the
					 * temporary folder on the host */
	/* the workload */
	struct sb_rlim rlims[10];
	size_t nrlims;
	size_t outputs_max_bytes;	/* cap on collected output files */
	uint32_t outputs_max_files;

	/* the job's cgroup.procs files, opened by the worker: the init
	 * moves itself in (writing "0"), so that the worker never waits for
	 * the kernel's cgroup migration (an RCU grace period) */
	int cg_procs[2];
	int ncg;

	/* worker-side bookkeeping shared with the child (set before
	 * clone): where the worker's argv and environ live, to wipe */
	uintptr_t arg_start, arg_end, env_start, env_end;
};

/* sandbox_init.c: the init's entry point, in the child right after
 * clone.  Never returns. */
_Noreturn void sb_init_main(const struct sb_launch *l, int sock);

/* sandbox_init.c: one frame to the worker; blocking (the init has nothing
 * better to do); exits when the worker is gone. */
int sb_send_frame(int sock, uint32_t type, uint32_t arg, const void *p,
		  size_t n);

/* sandbox_files.c, init side: the outputs folders after a job; and a
 * session's file operations on the workspace folder ws, each ending with
 * SB_F_OPDONE. */
void sb_collect_outputs(const struct sb_launch *l, int sock);
void sb_session_write(int ws, int sock, const char *path, uint32_t mode);
void sb_session_read(int ws, int sock, const char *path, size_t max);
void sb_session_list(int ws, int sock, const char *path, size_t max_entries);
void sb_session_remove(int ws, int sock, const char *path);

/* sandbox_init.c: run in global_init to learn where the worker's argv and
 * environ strings live, so that the init can wipe them. */
void sb_init_learn_args(uintptr_t *arg_start, uintptr_t *arg_end,
			uintptr_t *env_start, uintptr_t *env_end);

/* sandbox_seccomp.c */
int sb_seccomp_build(struct shoal_error *err);	/* once, in global_init */
int sb_seccomp_install(void);	/* child side: 0 or -errno */

/* sandbox_mounts.c */
int sb_mounts_plan(struct shoal_error *err);	/* once, in global_init */
/* Child side: builds the whole file system and pivots into it.  On
 * failure returns -errno and writes what failed ("bind /usr") to what. */
int sb_mounts_build(const struct sb_launch *l, char *what, size_t wn);
/* Child side: binds path onto itself read-only (staged files). */
int sb_mounts_make_readonly(const char *path);

/* sandbox_cgroup.c: per-job cgroups where the host allows. */
struct sb_cgroup {
	int ndirs;
	int fds[2];		/* open folders of the job's cgroups */
	char names[2][64];	/* their names under the parents */
	int parent[2];		/* index of the parent hierarchy */
	int has_memory, has_pids;
};

/* Probes once; logs one warning when limits fall back to rlimits. */
void sb_cgroup_probe(void);
int sb_cgroup_available(int *memory, int *pids);
/* Creates the job's cgroups with the limits; on failure cg->ndirs == 0
 * and the job falls back to rlimits (not an error). */
void sb_cgroup_create(struct sb_cgroup *cg, uint64_t memory, uint32_t pids);
/* Opens the job cgroups' cgroup.procs for writing; returns how many. */
int sb_cgroup_open_procs(const struct sb_cgroup *cg, int fds[2]);
/* How often the job's processes were OOM-killed and refused a fork by
 * pids.max, so far (sessions compare before and after each command). */
void sb_cgroup_events(const struct sb_cgroup *cg, unsigned long long *oom,
		      unsigned long long *pids_max);
void sb_cgroup_destroy(struct sb_cgroup *cg);

/* Reads a whole /proc or cgroup file (their sizes read as 0), at most max
 * bytes, NUL-terminated; the caller frees *data.  0 or -1. */
int sb_read_proc(const char *path, size_t max, char **data, size_t *len);

/* Raw syscalls that glibc 2.36 lacks wrappers for. */
int sb_pidfd_send_signal(int pidfd, int sig);

#endif
