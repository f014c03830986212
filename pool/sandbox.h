/* sandbox.h - what the sandbox promises.  Every way of running workload code
 * (commands, agent tools and MCP stdio servers) goes through here.
 *
 * A job is one sandbox running one command: a fresh set of namespaces (user,
 * mount, pid, net, ipc, uts, cgroup), a tmpfs root with the host's system
 * folders bound read-only, a tmpfs /workspace holding the staged files and
 * `input`, a seccomp filter, rlimits, cgroup limits where the host allows,
 * a wall-clock timeout that kills every process in it, and capped output.
 * The workload sees only the environment in the spec.  docs/SECURITY.md
 * says what each layer stops and what it does not.
 *
 * The API is non-blocking so that one worker thread can drive many jobs:
 *
 *     shoal_sandbox_start(spec, &job)      fork the sandbox; returns at once
 *     poll(shoal_sandbox_job_fd(job))      readable => call step
 *     shoal_sandbox_job_step(job, now)     returns 1 when the job finished
 *     shoal_sandbox_job_outcome(job)       status, exit code, output, files
 *     shoal_sandbox_job_free(job)          kills it if still running
 *
 * Call step also when now >= shoal_sandbox_job_deadline(job): that is how the
 * timeout is enforced.  Threads: a job belongs to the thread that started it
 * (the sandbox dies with that thread: PR_SET_PDEATHSIG).
 *
 * Outcomes (status, reason):
 *   OK         exit code 0
 *   FAILED     "exited with code 3", "killed by signal 11 (SEGV)"
 *   TIMEOUT    "timed out after 30s": every process of the sandbox is dead
 *   LIMIT      "output exceeded 8MiB" (truncated = 1), "memory limit 512MiB
 *              reached", "process limit 64 reached", "cpu time limit 10s
 *              reached", "disk limit 1GiB reached (workspace full)",
 *              "output files exceeded 32MiB or 4096 files"
 *   ERROR      "command not found: foo", "sandbox set-up failed: ..."
 *   CANCELLED  "cancelled" (shoal_sandbox_job_kill, or free while running)
 * Memory and process limits are told apart from a plain failure only with
 * cgroups; with the rlimit fall-back a job that ran out of memory is FAILED.
 *
 * Limits (struct shoal_wire_sandbox): memory and pids use a per-job cgroup
 * when the worker can create one (else RLIMIT_AS / RLIMIT_NPROC); pids
 * counts processes and threads, the sandbox's own init not included;
 * cpu_time_ms is RLIMIT_CPU, per process; disk sizes one tmpfs shared by
 * /workspace, /tmp and /dev/shm (and is RLIMIT_FSIZE); timeout_ms 0 means
 * none; max_output 0 means SHOAL_SANDBOX_DEFAULT_MAX_OUTPUT, a cap on
 * stdout and stderr together; readonly_paths are bound read-only at the
 * same path and must lie outside /proc, /dev, /tmp and /workspace.
 *
 * The caller must not reap children it did not start (waitpid(-1)) nor set
 * SIGCHLD to SIG_IGN: each sandbox's init is a child of the caller.  Every
 * descriptor the sandbox API creates is close-on-exec.
 */
#ifndef SHOAL_SANDBOX_H
#define SHOAL_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"
#include "transport/wire.h"

struct shoal_sandbox_file {
	const char *name;	/* relative path under /workspace */
	const void *data;
	size_t len;
	uint32_t mode;		/* 0444 for staged read-only files */
};

struct shoal_sandbox_spec {
	const char *const *argv;	/* argv[0] is looked up in PATH of env */
	size_t argc;
	const char *const *env;		/* "KEY=VALUE": the whole environment */
	size_t nenv;
	const struct shoal_sandbox_file *files;
	size_t nfiles;
	const void *input;		/* written to /workspace/input, and
					 * given on stdin */
	size_t input_len;
	const char *const *outputs;	/* folders under /workspace collected
					 * after the command exits */
	size_t noutputs;
	struct shoal_wire_sandbox limits; /* backend, network, limits, rootfs */
	/* Added: caps on the collected `outputs` files (0: the defaults
	 * below).  Past either cap the job ends SHOAL_STATUS_LIMIT. */
	size_t outputs_max_bytes;
	uint32_t outputs_max_files;
};

#define SHOAL_SANDBOX_OUTPUTS_MAX_BYTES ((size_t)32 << 20)
#define SHOAL_SANDBOX_OUTPUTS_MAX_FILES 4096u
/* max_output 0 means this much, never unlimited. */
#define SHOAL_SANDBOX_DEFAULT_MAX_OUTPUT ((uint64_t)64 << 20)

/* Inside every native sandbox the workload runs as uid/gid 1000,
 * "sandbox", the only uid mapped into its user namespace. */
#define SHOAL_SANDBOX_UID 1000

/* Host-wide settings (added).  Optional; call before global_init. */
struct shoal_sandbox_host_config {
	/* When the worker runs as root, the host uid/gid that the sandbox's
	 * uid 1000 maps to (default 65534, nobody/nogroup).  A non-root
	 * worker always maps its own uid/gid: the kernel allows no other
	 * single-id map without privilege. */
	uint32_t outer_uid;
	uint32_t outer_gid;
};

/* What global_init found (added), for logs and tests. */
struct shoal_sandbox_host_info {
	int native_ok;		/* native sandboxes can be started */
	int cgroup_memory;	/* memory limits use a cgroup (else RLIMIT_AS) */
	int cgroup_pids;	/* pids limits use a cgroup (else RLIMIT_NPROC) */
	uint32_t outer_uid;	/* host ids the sandbox user maps to */
	uint32_t outer_gid;
};

/* A collected output file; owned by the job. */
struct shoal_sandbox_output {
	char *path;		/* relative to /workspace */
	uint32_t mode;
	char *data;
	size_t len;
	uint8_t sha256[32];
};

struct shoal_sandbox_outcome {
	int status;		/* enum shoal_task_status */
	int exit_code;
	int term_signal;
	struct shoal_buf out;	/* stdout, capped */
	struct shoal_buf err;	/* stderr, capped */
	int truncated;		/* output passed max_output */
	char reason[512];	/* why, when status != OK: "timed out after
				 * 30s", "memory limit 512MiB reached", ... */
	uint64_t run_us;
	struct shoal_sandbox_output *outputs;
	size_t noutputs;
	/* Added, session file operations: */
	uint32_t mode;		/* read: the file's permission bits */
	int op_errno;		/* write/read/list/remove that failed with
				 * status ERROR: the errno (ENOENT, ELOOP,
				 * EISDIR, ...), else 0 */
};

struct shoal_sandbox_job;

/* Probes the host once (user namespaces, cgroups) and compiles the seccomp
 * filter once.  Call before any job; safe to call again.  Fails with
 * SHOAL_EUNSUPPORTED and a message naming the missing kernel feature. */
int shoal_sandbox_global_init(struct shoal_error *err);

/* Added: sets host-wide settings; SHOAL_EINVAL after global_init ran. */
int shoal_sandbox_configure(const struct shoal_sandbox_host_config *cfg,
			    struct shoal_error *err);

/* Added: what global_init found.  Valid after it returned. */
void shoal_sandbox_host_info(struct shoal_sandbox_host_info *info);

/* Starts a job.  The spec and everything it points to are copied or used
 * before return; the caller may free them.  On error no process is left. */
int shoal_sandbox_start(const struct shoal_sandbox_spec *spec,
			struct shoal_sandbox_job **out, struct shoal_error *err);

/* A descriptor that becomes readable when the job has progress to make
 * (an epoll set: frames from the sandbox, and its init's exit). */
int shoal_sandbox_job_fd(const struct shoal_sandbox_job *job);

/* Absolute monotonic ms when step must be called even without I/O. */
int64_t shoal_sandbox_job_deadline(const struct shoal_sandbox_job *job);

/* Makes progress without blocking.  Returns 0 while running, 1 once
 * finished (the outcome is then final), or a negative error. */
int shoal_sandbox_job_step(struct shoal_sandbox_job *job, int64_t now_ms);

/* Kills every process of the job (e.g. a cancel); step then returns 1 with
 * status SHOAL_STATUS_CANCELLED. */
void shoal_sandbox_job_kill(struct shoal_sandbox_job *job);

/* Valid after step returned 1. Owned by the job. */
const struct shoal_sandbox_outcome *
shoal_sandbox_job_outcome(const struct shoal_sandbox_job *job);

/* Kills the job if still running and frees it.  Never blocks: an init
 * still exiting (the kernel tears its namespaces down) is reaped later,
 * with its cgroup, by shoal_sandbox_reap (and, at exit, by a handler
 * global_init registers, for the exiting thread's jobs). */
void shoal_sandbox_job_free(struct shoal_sandbox_job *job);

/* Added: sessions.  One long-lived sandbox for an agent's tool calls:
 * several commands and file operations on one workspace, one operation at
 * a time.  A session is a job (same fd, deadline, step, outcome, kill,
 * free) whose init serves operations instead of running one command:
 *
 *     shoal_sandbox_session_open(spec, &s)   spec: env, files, input,
 *                                            limits; argv may be empty
 *     step until it returns 1                 then status OK: ready
 *     shoal_sandbox_session_exec(s, argv, ...) / _write / _read / _list
 *     step until it returns 1                 the outcome is the result
 *     ... more operations ...
 *     shoal_sandbox_job_free(s)               ends the sandbox
 *
 * exec runs a command to its end (stdin is /dev/null; every process it
 * started is killed when it exits, so nothing runs between operations
 * but what spawn started, below);
 * its outcome is a job's.  A timeout (timeout_ms, 0: limits.timeout_ms),
 * the output cap or shoal_sandbox_job_kill end the command, not the
 * session.  write creates or replaces a file (and its folders); read puts
 * a file's bytes in outcome.out and its permission bits in outcome.mode;
 * list puts one line per entry, "TYPE SIZE PATH" with TYPE f, d, l (a
 * symlink, never followed) or o, recursively, in outcome.out; remove
 * (added) unlinks a file, symlink or other non-folder (a folder: EISDIR).
 * A file operation that fails is status ERROR with outcome.op_errno set.
 * Paths are relative to /workspace, without ".."; a symlink anywhere on a
 * path fails the operation.  read and write are capped by
 * outputs_max_bytes, list by outputs_max_files.  An operation started
 * while another runs fails with SHOAL_EAGAIN; after the sandbox died (the
 * outcome says why) with SHOAL_ECLOSED.  Step also returns 1 when the
 * sandbox dies; shoal_sandbox_session_ended (added) tells the two apart:
 * 1 once the sandbox is gone, the outcome then saying why. */
int shoal_sandbox_session_open(const struct shoal_sandbox_spec *spec,
			       struct shoal_sandbox_job **out,
			       struct shoal_error *err);
int shoal_sandbox_session_exec(struct shoal_sandbox_job *s,
			       const char *const *argv, size_t argc,
			       uint64_t timeout_ms, struct shoal_error *err);
int shoal_sandbox_session_write(struct shoal_sandbox_job *s, const char *path,
				const void *data, size_t len, uint32_t mode,
				struct shoal_error *err);
int shoal_sandbox_session_read(struct shoal_sandbox_job *s, const char *path,
			       struct shoal_error *err);
int shoal_sandbox_session_list(struct shoal_sandbox_job *s, const char *path,
			       struct shoal_error *err);
int shoal_sandbox_session_remove(struct shoal_sandbox_job *s, const char *path,
				 struct shoal_error *err);
int shoal_sandbox_session_ended(const struct shoal_sandbox_job *s);

/* Added: a long-lived process in a session (an MCP stdio server).  spawn
 * starts argv like exec does (the workspace as its folder, the session's
 * environment with env's "KEY=VALUE" entries added or replacing, the
 * session's rlimits, cgroup limits shared with everything else in the
 * sandbox; argv and env together at most 32 KiB) but does not wait for it: step returns 1 as soon as it has
 * started (status OK) or could not (ERROR, "command not found: node").
 * Then take_spawned hands over, once, its stdin's write end and its
 * stdout's and stderr's read ends (fds[0..2], non-blocking and
 * close-on-exec; the caller closes them) and its pid inside the sandbox;
 * pipes not taken before the next operation are closed.  The process
 * leads its own session and is spared when a command ends (the commands'
 * processes are still all killed); it ends when it exits, or with the
 * sandbox.  At most 16 run in one session at once. */
int shoal_sandbox_session_spawn(struct shoal_sandbox_job *s,
				const char *const *argv, size_t argc,
				const char *const *env, size_t nenv,
				struct shoal_error *err);
int shoal_sandbox_session_take_spawned(struct shoal_sandbox_job *s,
				       int fds[3], int *pid);

/* Added: reaps the inits of freed jobs that have exited since, removing
 * their cgroups (and backend-none workspaces).  Every start and free does
 * this too; a worker calls it before exiting, until it returns 0.
 * Returns how many are still exiting.  Per thread. */
size_t shoal_sandbox_reap(void);

#endif
