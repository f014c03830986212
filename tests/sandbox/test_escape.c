/* test_escape.c - the sandbox escape suite.  Starts real sandboxes with
 * realistic limits; each test names the door it tries and checks that it
 * is shut, and the functional tests check what a command can rely on.
 *
 * Probes (probes/probe.c, static) are bound read-only at their build path
 * through readonly_paths.  The suite runs as root and, through
 * run_unprivileged.sh, as uid 65534; tests needing root say when they
 * are skipped. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/sha256.h"
#include "common/util.h"
#include "pool/sandbox.h"
#include "test.h"

#ifndef SHOAL_PROBE_DIR
#error "SHOAL_PROBE_DIR must name the folder of the probe binary"
#endif

static const char *default_env[] = {
	"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8",
};
/* The probe is copied at start-up into a fresh folder every uid can read
 * (the build tree may not be: the sandbox's host uid must reach what is
 * bound into it); PROBE is the copy. */
static char probe_dir[256];
static char PROBE[300];
static const char *probe_dirs[1];
static char secret[64];		/* set with setenv at start-up */
static struct shoal_sandbox_host_info host;

/* ---- running jobs ---- */

static void default_limits(struct shoal_wire_sandbox *l)
{
	memset(l, 0, sizeof(*l));
	l->backend = SHOAL_SANDBOX_NATIVE;
	l->memory = 256u << 20;
	l->pids = 64;
	l->cpu_time_ms = 20000;
	l->timeout_ms = 30000;
	l->disk = 16u << 20;
	l->max_output = 1u << 20;
	l->readonly_paths = probe_dirs;
	l->n_readonly_paths = 1;
}

static void spec_init(struct shoal_sandbox_spec *s, const char **argv, size_t argc)
{
	memset(s, 0, sizeof(*s));
	s->argv = argv;
	s->argc = argc;
	s->env = default_env;
	s->nenv = SHOAL_ARRAY_LEN(default_env);
	default_limits(&s->limits);
}

/* Drives one started job to the end, as a worker would. */
static void wait_job(struct shoal_sandbox_job *job)
{
	for (;;) {
		int64_t now = shoal_now_ms(), dl = shoal_sandbox_job_deadline(job);
		struct pollfd p = { shoal_sandbox_job_fd(job), POLLIN, 0 };
		int timeout = dl == INT64_MAX ? 1000 : (int)(dl > now ? dl - now : 0);

		if (shoal_sandbox_job_step(job, now) != 0)
			return;
		(void)poll(&p, 1, timeout > 1000 ? 1000 : timeout);
	}
}

static struct shoal_sandbox_job *run_spec(const struct shoal_sandbox_spec *s)
{
	struct shoal_sandbox_job *job = NULL;
	struct shoal_error err;

	shoal_error_clear(&err);
	if (shoal_sandbox_start(s, &job, &err) != SHOAL_OK) {
		fprintf(stderr, "start failed: %s\n", err.msg);
		return NULL;
	}
	wait_job(job);
	return job;
}

/* Runs /bin/sh -c script with the default limits. */
static struct shoal_sandbox_job *sh(const char *script)
{
	const char *argv[] = { "/bin/sh", "-c", script };
	struct shoal_sandbox_spec s;

	spec_init(&s, argv, 3);
	return run_spec(&s);
}

static struct shoal_sandbox_job *probe(const char *door, const char *arg)
{
	const char *argv[] = { PROBE, door, arg };
	struct shoal_sandbox_spec s;

	spec_init(&s, argv, arg != NULL ? 3 : 2);
	return run_spec(&s);
}

static const struct shoal_sandbox_outcome *oc(struct shoal_sandbox_job *job)
{
	static struct shoal_sandbox_outcome none;

	if (job == NULL) {
		memset(&none, 0, sizeof(none));
		none.status = -1;
		snprintf(none.reason, sizeof(none.reason), "job did not start");
		return &none;
	}
	return shoal_sandbox_job_outcome(job);
}

static const char *out_of(struct shoal_sandbox_job *job)
{
	const struct shoal_sandbox_outcome *o = oc(job);

	return o->out.data != NULL ? o->out.data : "";
}

/* Does the job's stdout hold the line? */
static int has_line(struct shoal_sandbox_job *job, const char *line)
{
	const char *o = out_of(job), *p = o;
	size_t n = strlen(line);

	while ((p = strstr(p, line)) != NULL) {
		if ((p == o || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
			return 1;
		p += n;
	}
	return 0;
}

static void show(const char *what, struct shoal_sandbox_job *job)
{
	const struct shoal_sandbox_outcome *o = oc(job);

	fprintf(stderr, "  [%s] status=%d exit=%d sig=%d reason=\"%s\"\n"
		"  out: %.600s\n  err: %.600s\n", what, o->status, o->exit_code,
		o->term_signal, o->reason, o->out.data ? o->out.data : "",
		o->err.data ? o->err.data : "");
}

#define EXPECT_PROBE(job, line)                                            \
	do {                                                               \
		int ok_ = has_line((job), (line));                         \
		CHECK(ok_ && (line) != NULL);                              \
		if (!ok_)                                                  \
			show(line, job);                                   \
	} while (0)

/* A sleep length (and probe tag) unique to this test process, so that runs
 * of the suite in parallel never count each other's processes. */
static const char *tag(int k)
{
	static char bufs[8][24];

	snprintf(bufs[k], sizeof(bufs[k]), "%ld",
		 1000000L * (k + 1) + (long)getpid() % 1000000);
	return bufs[k];
}

/* Counts host processes whose cmdline is exactly these NUL-joined args. */
static int count_host_procs(const char *const *args, size_t n)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int count = 0;

	while (d != NULL && (e = readdir(d)) != NULL) {
		char path[300], buf[512];
		ssize_t len;
		size_t i, off = 0;
		int fd, match = 1;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
		fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		len = read(fd, buf, sizeof(buf));
		close(fd);
		if (len <= 0)
			continue;
		for (i = 0; i < n && match; i++) {
			size_t l = strlen(args[i]);

			if (off + l + 1 > (size_t)len ||
			    memcmp(buf + off, args[i], l + 1) != 0)
				match = 0;
			off += l + 1;
		}
		count += match && off == (size_t)len;
	}
	if (d != NULL)
		closedir(d);
	return count;
}

/* Waits up to 2 s for processes to vanish. */
static int host_procs_gone(const char *const *args, size_t n)
{
	int i;

	for (i = 0; i < 40; i++) {
		if (count_host_procs(args, n) == 0)
			return 1;
		usleep(50000);
	}
	return 0;
}

/* ---- functional tests ---- */

static void sandbox_runs_a_command(void)
{
	struct shoal_sandbox_job *job = sh("echo hello; echo oops >&2");

	CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_OK);
	CHECK_STR(out_of(job), "hello\n");
	CHECK_STR(oc(job)->err.data, "oops\n");
	CHECK(oc(job)->run_us > 0);
	shoal_sandbox_job_free(job);
}

static void sandbox_reports_exit_codes_and_signals(void)
{
	struct shoal_sandbox_job *job = sh("exit 3");

	CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_FAILED);
	CHECK_EQ_INT(oc(job)->exit_code, 3);
	CHECK_STR(oc(job)->reason, "exited with code 3");
	shoal_sandbox_job_free(job);

	job = sh("kill -SEGV $$");
	CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_FAILED);
	CHECK_EQ_INT(oc(job)->term_signal, SIGSEGV);
	CHECK_STR(oc(job)->reason, "killed by signal 11 (SEGV)");
	shoal_sandbox_job_free(job);
}

static void sandbox_reports_command_not_found(void)
{
	const char *argv[] = { "no-such-command-xyz", "arg" };
	struct shoal_sandbox_spec s;
	struct shoal_sandbox_job *job;

	spec_init(&s, argv, 2);
	job = run_spec(&s);
	CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_ERROR);
	CHECK_STR(oc(job)->reason, "command not found: no-such-command-xyz");
	shoal_sandbox_job_free(job);
}

static void sandbox_gives_input_on_stdin_and_in_workspace(void)
{
	const char *argv[] = { "/bin/sh", "-c", "cat; cat /workspace/input; pwd" };
	struct shoal_sandbox_spec s;
	struct shoal_sandbox_job *job;

	spec_init(&s, argv, 3);
	s.input = "chunk one\n";
	s.input_len = strlen(s.input);
	job = run_spec(&s);
	CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_OK);
	CHECK_STR(out_of(job), "chunk one\nchunk one\n/workspace\n");
	shoal_sandbox_job_free(job);
}

static void sandbox_environment_is_exactly_the_spec(void)
{
	const char *argv[] = { "env" };
	const char *env[] = { "PATH=/usr/bin:/bin", "FOO=bar baz" };
	struct shoal_sandbox_spec s;
	struct shoal_sandbox_job *job;

	spec_init(&s, argv, 1);
	s.env = env;
	s.nenv = 2;
	job = run_spec(&s);
	CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_OK);
	CHECK_STR(out_of(job), "PATH=/usr/bin:/bin\nFOO=bar baz\n");
	shoal_sandbox_job_free(job);

	/* PATH is the spec's: without one, the default system PATH */
	s.env = NULL;
	s.nenv = 0;
	job = run_spec(&s);
	CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_OK);
	CHECK_STR(out_of(job), "");
	shoal_sandbox_job_free(job);
}

static void sandbox_stages_read_only_files(void)
{
	static const struct shoal_sandbox_file files[] = {
		{ "data/a.txt", "abc", 3, 0444 },
		{ "rw.txt", "rw", 2, 0644 },
	};
	char script[2048];
	const char *argv[] = { "/bin/sh", "-c", script };
	struct shoal_sandbox_spec s;
	struct shoal_sandbox_job *job;

	snprintf(script, sizeof(script),
		 "cat data/a.txt; echo; stat -c '%%a %%U' data/a.txt rw.txt;"
		 "%s write data/a.txt; %s chmod data/a.txt; "
		 "%s unlink data/a.txt; %s write input;"
		 "echo more >> rw.txt && cat rw.txt; cat data/a.txt",
		 PROBE, PROBE, PROBE, PROBE);
	spec_init(&s, argv, 3);
	s.files = files;
	s.nfiles = 2;
	s.input = "in";
	s.input_len = 2;
	job = run_spec(&s);
	CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_OK);
	EXPECT_PROBE(job, "abc");
	EXPECT_PROBE(job, "444 sandbox");
	EXPECT_PROBE(job, "644 sandbox");
	/* 0444 answers EACCES first; the read-only bind answers chmod */
	CHECK(has_line(job, "write=EACCES") || has_line(job, "write=EROFS"));
	EXPECT_PROBE(job, "chmod=EROFS");
	EXPECT_PROBE(job, "unlink=EBUSY");
	EXPECT_PROBE(job, "rwmore");
	CHECK(strstr(out_of(job), "write=OK") == NULL);
	CHECK(strstr(out_of(job), "\nabc") != NULL);
	shoal_sandbox_job_free(job);
}

static const struct shoal_sandbox_output *
find_output(const struct shoal_sandbox_outcome *o, const char *path)
{
	size_t i;

	for (i = 0; i < o->noutputs; i++)
		if (strcmp(o->outputs[i].path, path) == 0)
			return &o->outputs[i];
	return NULL;
}

static void sandbox_collects_outputs_without_following_links(void)
{
	const char *argv[] = { "/bin/sh", "-c",
		"mkdir -p out/sub && printf hello > out/a.txt && "
		"printf world > out/sub/b.txt && chmod 600 out/sub/b.txt && "
		"ln -s /etc/shadow out/x && ln -s /etc/passwd out/y && "
		"ln -s / out/root && mkfifo out/fifo && ln -s /etc out2" };
	const char *outs[] = { "out", "out2", "missing" };
	struct shoal_sandbox_spec s;
	struct shoal_sandbox_job *job;
	const struct shoal_sandbox_output *a, *b;
	uint8_t want[32];

	spec_init(&s, argv, 3);
	s.outputs = outs;
	s.noutputs = 3;
	job = run_spec(&s);
	CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_OK);
	CHECK_EQ_INT(oc(job)->noutputs, 2);
	a = find_output(oc(job), "out/a.txt");
	b = find_output(oc(job), "out/sub/b.txt");
	CHECK(a != NULL && a->len == 5 && memcmp(a->data, "hello", 5) == 0);
	CHECK(b != NULL && b->len == 5 && b->mode == 0600);
	shoal_sha256("hello", 5, want);
	CHECK(a != NULL && memcmp(a->sha256, want, 32) == 0);
	/* sorted by path */
	CHECK(oc(job)->noutputs == 2 && strcmp(oc(job)->outputs[0].path, "out/a.txt") == 0);
	shoal_sandbox_job_free(job);
}

static void sandbox_runs_many_jobs_at_once(void)
{
	enum { N = 64 };
	struct shoal_sandbox_job *jobs[N];
	char args[N][16];
	const char *argv[N][3];
	struct shoal_sandbox_spec s;
	struct shoal_error err;
	int i, started = 0, done = 0, ok = 0;
	int finished[N];

	for (i = 0; i < N; i++) {
		snprintf(args[i], sizeof(args[i]), "job-%d", i);
		argv[i][0] = "/bin/echo";
		argv[i][1] = args[i];
		spec_init(&s, argv[i], 2);
		jobs[i] = NULL;
		finished[i] = 0;
		if (shoal_sandbox_start(&s, &jobs[i], &err) == SHOAL_OK)
			started++;
		else
			fprintf(stderr, "  start %d: %s\n", i, err.msg);
	}
	CHECK_EQ_INT(started, N);
	while (done < started) {
		struct pollfd p[N];
		int n = 0;

		for (i = 0; i < N; i++) {
			if (jobs[i] == NULL || finished[i])
				continue;
			if (shoal_sandbox_job_step(jobs[i], shoal_now_ms()) == 1) {
				finished[i] = 1;
				done++;
				continue;
			}
			p[n].fd = shoal_sandbox_job_fd(jobs[i]);
			p[n].events = POLLIN;
			n++;
		}
		if (n > 0)
			(void)poll(p, (nfds_t)n, 1000);
	}
	for (i = 0; i < N; i++) {
		char want[32];

		if (jobs[i] == NULL)
			continue;
		snprintf(want, sizeof(want), "job-%d\n", i);
		ok += oc(jobs[i])->status == SHOAL_STATUS_OK &&
		      strcmp(out_of(jobs[i]), want) == 0;
		shoal_sandbox_job_free(jobs[i]);
	}
	CHECK_EQ_INT(ok, N);
}

static void sandbox_system_tools_work(void)
{
	/* awk is a link through /etc/alternatives */
	struct shoal_sandbox_job *job =
		sh("echo 1 2 | awk '{print $2}'; id -un; hostname; "
		   "ls /etc/ssl/certs | head -c 1 | wc -c; test -w /tmp && echo tmp-ok");

	CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_OK);
	CHECK_STR(out_of(job), "2\nsandbox\nsandbox\n1\ntmp-ok\n");
	if (oc(job)->status != SHOAL_STATUS_OK)
		show("tools", job);
	shoal_sandbox_job_free(job);
}

/* ---- the doors ---- */

static void sandbox_runs_unprivileged_without_capabilities(void)
{
	struct shoal_sandbox_job *job = probe("ids", NULL);

	EXPECT_PROBE(job, "uid=1000 euid=1000 gid=1000 egid=1000");
	EXPECT_PROBE(job, "CapInh:\t0000000000000000");
	EXPECT_PROBE(job, "CapPrm:\t0000000000000000");
	EXPECT_PROBE(job, "CapEff:\t0000000000000000");
	EXPECT_PROBE(job, "CapBnd:\t0000000000000000");
	EXPECT_PROBE(job, "CapAmb:\t0000000000000000");
	EXPECT_PROBE(job, "NoNewPrivs:\t1");
	EXPECT_PROBE(job, "Seccomp:\t2");
	/* under memory pressure the sandbox goes before the host */
	EXPECT_PROBE(job, "oom_score_adj=1000");
	/* the worker ignores SIGPIPE (main); the workload must not */
	EXPECT_PROBE(job, "SigIgn:\t0000000000000000");
	EXPECT_PROBE(job, "SigBlk:\t0000000000000000");
	shoal_sandbox_job_free(job);
}

/* The harness holds credentials; a sandbox must find none of them: not in
 * its environment, not in any process's environ or cmdline, not in any
 * readable file. */
static void sandbox_hides_the_harness_credentials(void)
{
	char script[2048];
	struct shoal_sandbox_job *job;

	/* patterns written so that the grep's own cmdline cannot match */
	snprintf(script, sizeof(script),
		 "env; echo ---;"
		 "cat /proc/1/environ >/dev/null 2>&1 && echo environ-readable;"
		 "cat /proc/1/cmdline | tr '\\0' ' '; echo;"
		 "for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do "
		 "  cat $f 2>/dev/null; done | grep -c -e 'sk-ctest-[0]e5cafe' "
		 "  -e '%.8s[%c]%s';"
		 "timeout 60 grep -r -l -s -a -e 'sk-ctest-[0]e5cafe' -e '%.8s[%c]%s' "
		 "  / --exclude-dir=proc --exclude-dir=sys --exclude-dir=usr;"
		 "echo grep-done",
		 secret, secret[8], secret + 9, secret, secret[8], secret + 9);
	job = sh(script);
	CHECK(strstr(out_of(job), "sk-ctest") == NULL);
	CHECK(strstr(out_of(job), secret) == NULL);
	CHECK(strstr(out_of(job), "OPENAI") == NULL);
	CHECK(strstr(out_of(job), "environ-readable") == NULL);
	EXPECT_PROBE(job, "0");		/* grep -c: no process shows them */
	EXPECT_PROBE(job, "grep-done");
	CHECK(strstr(out_of(job), "---\nshoal-sandbox-init") != NULL);
	shoal_sandbox_job_free(job);
}

static void sandbox_sees_and_signals_no_host_process(void)
{
	char pid[24];
	struct shoal_sandbox_job *job;

	job = sh("ls -d /proc/[0-9]* | wc -l; ls /proc/1/ns >/dev/null && echo ok");
	/* init, sh, ls, wc: nothing of the host */
	CHECK(atoi(out_of(job)) >= 2 && atoi(out_of(job)) <= 5);
	shoal_sandbox_job_free(job);

	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	job = probe("kill", pid);
	CHECK(!has_line(job, "kill=OK") || getpid() <= 3);
	shoal_sandbox_job_free(job);
	job = sh("kill -9 -1; echo survived");
	CHECK(kill(getpid(), 0) == 0);		/* we are still here */
	shoal_sandbox_job_free(job);
}

static void sandbox_blocks_ptrace_and_process_vm(void)
{
	struct shoal_sandbox_job *job = probe("ptrace", NULL);

	EXPECT_PROBE(job, "ptrace=EPERM");
	shoal_sandbox_job_free(job);
	job = probe("vm_readv", NULL);
	EXPECT_PROBE(job, "process_vm_readv=EPERM");
	shoal_sandbox_job_free(job);
}

static int listen_unix(const char *path, int abstract)
{
	struct sockaddr_un a;
	socklen_t len;
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	if (abstract) {
		memcpy(a.sun_path + 1, path, strlen(path));
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(path));
	} else {
		shoal_strlcpy(a.sun_path, path, sizeof(a.sun_path));
		len = sizeof(a);
	}
	if (s < 0 || bind(s, (struct sockaddr *)&a, len) != 0 || listen(s, 4) != 0) {
		perror("listen_unix");
		return -1;
	}
	return s;
}

static void sandbox_blocks_host_sockets(void)
{
	char dir[] = "/tmp/shoal-sock-XXXXXX", path[128], name[64], port[16];
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	struct shoal_sandbox_job *job;
	int us, as, ts;

	CHECK(mkdtemp(dir) != NULL);
	chmod(dir, 0755);
	snprintf(path, sizeof(path), "%s/harness.sock", dir);
	us = listen_unix(path, 0);
	chmod(path, 0777);
	snprintf(name, sizeof(name), "shoal-test-%ld", (long)getpid());
	as = listen_unix(name, 1);
	ts = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(bind(ts, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(ts, 4) == 0);
	getsockname(ts, (struct sockaddr *)&a, &al);
	snprintf(port, sizeof(port), "%d", ntohs(a.sin_port));
	CHECK(us >= 0 && as >= 0);

	job = probe("connect_unix", path);
	EXPECT_PROBE(job, "connect_unix=ENOENT");
	shoal_sandbox_job_free(job);
	job = probe("connect_abstract", name);
	EXPECT_PROBE(job, "connect_abstract=ECONNREFUSED");
	shoal_sandbox_job_free(job);
	job = probe("connect_tcp", port);
	EXPECT_PROBE(job, "connect_tcp=ECONNREFUSED");
	shoal_sandbox_job_free(job);
	/* nothing but lo in the network namespace */
	job = sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '");
	CHECK_STR(out_of(job), "lo\n");
	shoal_sandbox_job_free(job);

	close(us);
	close(as);
	close(ts);
	unlink(path);
	rmdir(dir);
}

static void sandbox_cannot_write_outside_the_workspace(void)
{
	char marker[64], script[1024];
	struct shoal_sandbox_job *job;

	snprintf(marker, sizeof(marker), "/tmp/shoal-escape-%ld", (long)getpid());
	snprintf(script, sizeof(script),
		 "for p in /etc/x /usr/x /x /bin/x %s/x /proc/x /dev/x; do "
		 "  touch $p 2>/dev/null && echo wrote $p; done;"
		 "echo inside > %s && echo tmp-ok;"
		 "ls / | tr '\\n' ' '; echo;"
		 "for p in /root /home /run /var/lib /var/run /var/log /etc/shadow "
		 "  /etc/machine-id /etc/ssh /boot /srv /opt /mnt /work; do "
		 "  test -e $p && echo visible $p; done; echo end",
		 probe_dir, marker);
	job = sh(script);
	CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_OK);
	CHECK(strstr(out_of(job), "wrote") == NULL);
	CHECK(strstr(out_of(job), "visible") == NULL);
	if (strstr(out_of(job), "visible") != NULL)
		show("visible host paths", job);
	EXPECT_PROBE(job, "tmp-ok");
	EXPECT_PROBE(job, "end");
	/* the sandbox's /tmp is its own */
	CHECK(access(marker, F_OK) != 0);
	if (strstr(out_of(job), "wrote") != NULL)
		show("write outside", job);
	shoal_sandbox_job_free(job);
}

static void sandbox_blocks_tiocsti(void)
{
	struct shoal_sandbox_job *job = probe("tiocsti", NULL);

	EXPECT_PROBE(job, "tiocsti=EPERM");
	EXPECT_PROBE(job, "tiocsti_hi=EPERM");
	shoal_sandbox_job_free(job);
}

static void sandbox_blocks_nested_namespaces_and_mounts(void)
{
	struct shoal_sandbox_job *job = probe("unshare", NULL);

	EXPECT_PROBE(job, "unshare_user=EPERM");
	EXPECT_PROBE(job, "unshare_ns=EPERM");
	EXPECT_PROBE(job, "setns=EPERM");
	shoal_sandbox_job_free(job);
	job = probe("clone_ns", NULL);
	EXPECT_PROBE(job, "clone_newuser=EPERM");
	EXPECT_PROBE(job, "clone3=ENOSYS");
	shoal_sandbox_job_free(job);
	job = probe("mount", NULL);
	EXPECT_PROBE(job, "mount_tmpfs=EPERM");
	EXPECT_PROBE(job, "umount_proc=EPERM");
	EXPECT_PROBE(job, "chroot=EPERM");
	EXPECT_PROBE(job, "pivot_root=EPERM");
	shoal_sandbox_job_free(job);
	job = sh("unshare -Ur true && echo nested-ok; echo end");
	CHECK(strstr(out_of(job), "nested-ok") == NULL);
	EXPECT_PROBE(job, "end");
	shoal_sandbox_job_free(job);
}

static void sandbox_blocks_kernel_attack_surface(void)
{
	struct shoal_sandbox_job *job = probe("io_uring", NULL);

	EXPECT_PROBE(job, "io_uring_setup=EPERM");
	shoal_sandbox_job_free(job);
	job = probe("keyctl", NULL);
	EXPECT_PROBE(job, "keyctl=EPERM");
	EXPECT_PROBE(job, "add_key=EPERM");
	shoal_sandbox_job_free(job);
	job = probe("bpf", NULL);
	EXPECT_PROBE(job, "bpf=EPERM");
	EXPECT_PROBE(job, "perf_event_open=EPERM");
	EXPECT_PROBE(job, "userfaultfd=EPERM");
	shoal_sandbox_job_free(job);
	job = probe("handle", NULL);
	EXPECT_PROBE(job, "name_to_handle_at=EPERM");
	EXPECT_PROBE(job, "open_by_handle_at=EPERM");
	shoal_sandbox_job_free(job);
	job = probe("personality", NULL);
	EXPECT_PROBE(job, "personality_query=OK");
	EXPECT_PROBE(job, "personality_linux=OK");
	EXPECT_PROBE(job, "personality_noaslr=EPERM");
	shoal_sandbox_job_free(job);
}

static void sandbox_blocks_foreign_syscall_abis(void)
{
	struct shoal_sandbox_job *job = probe("int80", NULL);

	/* i386 getpid through int 0x80 must not run */
	CHECK(!has_line(job, "int80=OK"));
	CHECK(strstr(out_of(job), "int80=") != NULL);
	shoal_sandbox_job_free(job);
	job = probe("x32", NULL);
	CHECK(!has_line(job, "x32=OK"));
	CHECK(strstr(out_of(job), "x32=") != NULL);
	shoal_sandbox_job_free(job);
}

static void sandbox_setuid_binary_gains_nothing(void)
{
	char dir[] = "/var/tmp/shoal-suid-XXXXXX", path[sizeof(dir) + 16];
	char cmd[1024];
	const char *ro[] = { probe_dir, dir };
	const char *argv[] = { path, "ids" };
	struct shoal_sandbox_spec s;
	struct shoal_sandbox_job *job;

	if (geteuid() != 0) {
		fprintf(stderr, "  (setuid copy needs root: checking "
			"NoNewPrivs only)\n");
		job = probe("ids", NULL);
		EXPECT_PROBE(job, "NoNewPrivs:\t1");
		shoal_sandbox_job_free(job);
		return;
	}
	CHECK(mkdtemp(dir) != NULL);
	chmod(dir, 0755);
	snprintf(path, sizeof(path), "%s/suid-probe", dir);
	snprintf(cmd, sizeof(cmd), "cp %s %s && chown 0:0 %s && chmod 6755 %s",
		 PROBE, path, path, path);
	CHECK(system(cmd) == 0);
	spec_init(&s, argv, 2);
	s.limits.readonly_paths = ro;
	s.limits.n_readonly_paths = 2;
	job = run_spec(&s);
	EXPECT_PROBE(job, "uid=1000 euid=1000 gid=1000 egid=1000");
	EXPECT_PROBE(job, "CapEff:\t0000000000000000");
	shoal_sandbox_job_free(job);
	unlink(path);
	rmdir(dir);
}

static void sandbox_closes_leaked_descriptors(void)
{
	int p[2], f;
	struct shoal_sandbox_job *job;

	/* opened without CLOEXEC, as careless code in a worker might */
	CHECK(pipe(p) == 0);
	f = open("/etc/hostname", O_RDONLY);
	job = probe("fds", NULL);
	EXPECT_PROBE(job, "fd 0 /dev/null");
	CHECK(strstr(out_of(job), "fd 3") == NULL);
	CHECK(strstr(out_of(job), "fd 1 pipe:") != NULL);
	CHECK(strstr(out_of(job), "fd 2 pipe:") != NULL);
	shoal_sandbox_job_free(job);
	close(p[0]);
	close(p[1]);
	if (f >= 0)
		close(f);
}

/* ---- resource limits ---- */

static void sandbox_contains_a_fork_bomb(void)
{
	const char *argv[] = { PROBE, "forkbomb" };
	struct shoal_sandbox_spec s;
	struct shoal_sandbox_job *job;
	const char *forks;

	spec_init(&s, argv, 2);
	s.limits.pids = 32;
	job = run_spec(&s);
	forks = strstr(out_of(job), "forks=");
	CHECK(forks != NULL && atoi(forks + 6) < 32);
	if (host.cgroup_pids) {
		CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_LIMIT);
		CHECK_STR(oc(job)->reason, "process limit 32 reached");
	} else {
		CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_FAILED);
	}
	CHECK(kill(getpid(), 0) == 0);
	shoal_sandbox_job_free(job);

	/* the shell classic: its main process returns at once */
	job = sh(":(){ :|:& };:; sleep 1; echo still-here");
	CHECK(oc(job)->status == SHOAL_STATUS_OK ||
	      oc(job)->status == SHOAL_STATUS_LIMIT ||
	      oc(job)->status == SHOAL_STATUS_FAILED);
	shoal_sandbox_job_free(job);
}

static void sandbox_contains_a_memory_hog(void)
{
	const char *argv[] = { PROBE, "memhog" };
	struct shoal_sandbox_spec s;
	struct shoal_sandbox_job *job;

	spec_init(&s, argv, 2);
	s.limits.memory = 64u << 20;
	job = run_spec(&s);
	if (host.cgroup_memory) {
		CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_LIMIT);
		CHECK_STR(oc(job)->reason, "memory limit 64MiB reached");
	} else {
		/* RLIMIT_AS: malloc fails inside; not told apart from a crash */
		const char *a = strstr(out_of(job), "allocated=");

		CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_FAILED);
		CHECK(a != NULL && strtoull(a + 10, NULL, 10) <= (64u << 20));
	}
	if (oc(job)->status != SHOAL_STATUS_LIMIT && host.cgroup_memory)
		show("memhog", job);
	shoal_sandbox_job_free(job);
}

static void sandbox_contains_a_disk_filler(void)
{
	char script[1024];
	const char *argv[] = { "/bin/sh", "-c", script };
	struct shoal_sandbox_spec s;
	struct shoal_sandbox_job *job;
	const char *w;

	snprintf(script, sizeof(script),
		 "%s diskfill /tmp/fill; %s diskfill /workspace/big", PROBE, PROBE);
	spec_init(&s, argv, 3);
	s.limits.disk = 8u << 20;
	job = run_spec(&s);
	CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_LIMIT);
	CHECK_STR(oc(job)->reason, "disk limit 8MiB reached (workspace full)");
	w = strstr(out_of(job), "written=");
	CHECK(w != NULL && strtoull(w + 8, NULL, 10) <= (8u << 20));
	CHECK(strstr(out_of(job), "errno=ENOSPC") != NULL);
	shoal_sandbox_job_free(job);
}

static void sandbox_caps_an_output_flood(void)
{
	const char *argv[] = { PROBE, "flood" };
	struct shoal_sandbox_spec s;
	struct shoal_sandbox_job *job;

	spec_init(&s, argv, 2);
	s.limits.max_output = 1u << 20;
	job = run_spec(&s);
	CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_LIMIT);
	CHECK_STR(oc(job)->reason, "output exceeded 1MiB");
	CHECK_EQ_INT(oc(job)->truncated, 1);
	CHECK_EQ_INT(oc(job)->out.len + oc(job)->err.len, 1u << 20);
	shoal_sandbox_job_free(job);
}

static void sandbox_stops_cpu_burners(void)
{
	const char *argv[] = { PROBE, "spin" };
	struct shoal_sandbox_spec s;
	struct shoal_sandbox_job *job;

	spec_init(&s, argv, 2);
	s.limits.cpu_time_ms = 1000;
	job = run_spec(&s);
	CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_LIMIT);
	CHECK_STR(oc(job)->reason, "cpu time limit 1s reached");
	shoal_sandbox_job_free(job);
}

static void sandbox_caps_collected_outputs(void)
{
	const char *argv[] = { "/bin/sh", "-c",
		"mkdir out && head -c 5000 /dev/zero > out/a && "
		"head -c 5000 /dev/zero > out/b" };
	const char *outs[] = { "out" };
	struct shoal_sandbox_spec s;
	struct shoal_sandbox_job *job;

	spec_init(&s, argv, 3);
	s.outputs = outs;
	s.noutputs = 1;
	s.outputs_max_bytes = 8000;
	job = run_spec(&s);
	CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_LIMIT);
	CHECK_STR(oc(job)->reason, "output files exceeded 8000 bytes or 4096 files");
	CHECK(oc(job)->noutputs <= 1);
	shoal_sandbox_job_free(job);
}

static void sandbox_timeout_kills_every_process(void)
{
	const char *sleeper[] = { "sleep", tag(0) };
	const char *lingerer[] = { PROBE, "linger", tag(1) };
	char script[128];
	const char *argv[] = { "/bin/sh", "-c", script };
	struct shoal_sandbox_spec s;
	struct shoal_sandbox_job *job;
	int64_t t0 = shoal_now_ms();

	snprintf(script, sizeof(script), "sleep %s & sleep %s", tag(0), tag(0));
	spec_init(&s, argv, 3);
	s.limits.timeout_ms = 1000;
	job = run_spec(&s);
	CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_TIMEOUT);
	CHECK_STR(oc(job)->reason, "timed out after 1s");
	CHECK(shoal_now_ms() - t0 < 5000);
	shoal_sandbox_job_free(job);
	CHECK(host_procs_gone(sleeper, 2));

	/* a child that setsid()s away is in the pid namespace all the same */
	spec_init(&s, lingerer, 3);
	s.limits.timeout_ms = 500;
	job = run_spec(&s);
	CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_TIMEOUT);
	CHECK_STR(oc(job)->reason, "timed out after 500ms");
	shoal_sandbox_job_free(job);
	CHECK(host_procs_gone(lingerer, 3));
}

static void sandbox_kills_leftovers_when_the_command_exits(void)
{
	const char *sleeper[] = { "sleep", tag(2) };
	char script[128];
	struct shoal_sandbox_job *job;

	snprintf(script, sizeof(script), "sleep %s & echo started", tag(2));
	job = sh(script);
	CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_OK);
	CHECK_STR(out_of(job), "started\n");
	shoal_sandbox_job_free(job);
	CHECK(host_procs_gone(sleeper, 2));
}

static void sandbox_cancel_kills_the_job(void)
{
	const char *argv[] = { "sleep", "60" };
	struct shoal_sandbox_spec s;
	struct shoal_sandbox_job *job = NULL;
	struct shoal_error err;

	spec_init(&s, argv, 2);
	CHECK(shoal_sandbox_start(&s, &job, &err) == SHOAL_OK);
	if (job == NULL)
		return;
	usleep(100000);
	CHECK_EQ_INT(shoal_sandbox_job_step(job, shoal_now_ms()), 0);
	shoal_sandbox_job_kill(job);
	wait_job(job);
	CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_CANCELLED);
	shoal_sandbox_job_free(job);

	/* free of a running job kills and reaps it */
	CHECK(shoal_sandbox_start(&s, &job, &err) == SHOAL_OK);
	shoal_sandbox_job_free(job);
}

static void sandbox_rejects_bad_specs(void)
{
	static const char *const bad_names[] = { "../x", "/etc/x", "a/../b", "a//b",
						 "", "a/", "." };
	static const char *bad_ro[] = { "/proc" };
	const char *argv[] = { "true" };
	struct shoal_sandbox_file f = { NULL, "x", 1, 0644 };
	struct shoal_sandbox_spec s;
	struct shoal_sandbox_job *job = NULL;
	struct shoal_error err;
	size_t i;

	for (i = 0; i < SHOAL_ARRAY_LEN(bad_names); i++) {
		spec_init(&s, argv, 1);
		f.name = bad_names[i];
		s.files = &f;
		s.nfiles = 1;
		CHECK_EQ_INT(shoal_sandbox_start(&s, &job, &err), SHOAL_EINVAL);
		spec_init(&s, argv, 1);
		s.outputs = &bad_names[i];
		s.noutputs = 1;
		CHECK_EQ_INT(shoal_sandbox_start(&s, &job, &err), SHOAL_EINVAL);
	}
	spec_init(&s, argv, 1);
	s.limits.readonly_paths = bad_ro;
	CHECK_EQ_INT(shoal_sandbox_start(&s, &job, &err), SHOAL_EINVAL);
	spec_init(&s, argv, 0);
	CHECK_EQ_INT(shoal_sandbox_start(&s, &job, &err), SHOAL_EINVAL);
}

/* network: host opts out of the empty network namespace. */
static void sandbox_network_host_reaches_loopback(void)
{
	const char *argv[] = { PROBE, "connect_tcp", NULL };
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	struct shoal_sandbox_spec s;
	struct shoal_sandbox_job *job;
	char port[16];
	int ts = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(bind(ts, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(ts, 4) == 0);
	getsockname(ts, (struct sockaddr *)&a, &al);
	snprintf(port, sizeof(port), "%d", ntohs(a.sin_port));
	argv[2] = port;
	spec_init(&s, argv, 3);
	s.limits.network_host = 1;
	job = run_spec(&s);
	EXPECT_PROBE(job, "connect_tcp=OK");
	shoal_sandbox_job_free(job);
	close(ts);
}

/* A folder as the root file system, bound read-only. */
static void sandbox_runs_in_a_rootfs_folder(void)
{
	char dir[] = "/tmp/shoal-rootfs-XXXXXX", cmd[512];
	const char *argv[] = { "/probe", "ids" };
	const char *argv2[] = { "/probe", "write", "/x" };
	struct shoal_sandbox_spec s;
	struct shoal_sandbox_job *job;

	CHECK(mkdtemp(dir) != NULL);
	chmod(dir, 0755);
	snprintf(cmd, sizeof(cmd), "cd %s && mkdir proc dev tmp && cp %s probe",
		 dir, PROBE);
	CHECK(system(cmd) == 0);
	/* no /workspace yet: a clear set-up error */
	spec_init(&s, argv, 2);
	s.limits.rootfs = dir;
	s.limits.n_readonly_paths = 0;
	job = run_spec(&s);
	CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_ERROR);
	CHECK_STR(oc(job)->reason, "sandbox set-up failed: rootfs lacks the folder "
		  "/workspace: No such file or directory");
	shoal_sandbox_job_free(job);

	snprintf(cmd, sizeof(cmd), "mkdir %s/workspace", dir);
	CHECK(system(cmd) == 0);
	job = run_spec(&s);
	CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_OK);
	EXPECT_PROBE(job, "uid=1000 euid=1000 gid=1000 egid=1000");
	EXPECT_PROBE(job, "Seccomp:\t2");
	shoal_sandbox_job_free(job);
	spec_init(&s, argv2, 3);
	s.limits.rootfs = dir;
	s.limits.n_readonly_paths = 0;
	job = run_spec(&s);
	CHECK(has_line(job, "write=EROFS") || has_line(job, "write=EACCES"));
	shoal_sandbox_job_free(job);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
}

/* ---- sessions: one sandbox, many operations ---- */

/* Runs one step-until-done of a session operation. */
static int op_wait(struct shoal_sandbox_job *s)
{
	wait_job(s);
	return oc(s)->status;
}

static struct shoal_sandbox_job *session_open(void)
{
	static const struct shoal_sandbox_file files[] = {
		{ "data/a.txt", "abc", 3, 0444 },
	};
	struct shoal_sandbox_spec spec;
	struct shoal_sandbox_job *s = NULL;
	struct shoal_error err;

	spec_init(&spec, NULL, 0);
	spec.files = files;
	spec.nfiles = 1;
	spec.limits.max_output = 64 * 1024;
	if (shoal_sandbox_session_open(&spec, &s, &err) != SHOAL_OK) {
		fprintf(stderr, "  session_open: %s\n", err.msg);
		return NULL;
	}
	if (op_wait(s) != SHOAL_STATUS_OK)
		show("session open", s);
	return s;
}

static int sexec(struct shoal_sandbox_job *s, const char *script, uint64_t timeout_ms)
{
	const char *argv[] = { "/bin/sh", "-c", script };
	struct shoal_error err;

	if (shoal_sandbox_session_exec(s, argv, 3, timeout_ms, &err) != SHOAL_OK) {
		fprintf(stderr, "  exec: %s\n", err.msg);
		return -1;
	}
	return op_wait(s);
}

static int sread(struct shoal_sandbox_job *s, const char *path)
{
	struct shoal_error err;

	if (shoal_sandbox_session_read(s, path, &err) != SHOAL_OK)
		return -1;
	return op_wait(s);
}

static int swrite(struct shoal_sandbox_job *s, const char *path, const char *data)
{
	struct shoal_error err;

	if (shoal_sandbox_session_write(s, path, data, strlen(data), 0644, &err) !=
	    SHOAL_OK)
		return -1;
	return op_wait(s);
}

/* ---- backend none: same outcome semantics, no isolation ---- */

static void sandbox_none_backend_has_the_same_semantics(void)
{
	static const struct shoal_sandbox_file files[] = { { "d/f", "staged", 6, 0444 } };
	const char *argv[] = { "/bin/sh", "-c",
		"cat; cat d/f; mkdir out; printf x > out/o; env | sort; exit 7" };
	char script2[128];
	const char *argv2[] = { "sh", "-c", script2 };
	const char *sleeper[] = { "sleep", tag(3) };
	const char *outs[] = { "out" };
	const char *env[] = { "PATH=/usr/bin:/bin", "A=1" };
	struct shoal_sandbox_spec s;
	struct shoal_sandbox_job *job;

	spec_init(&s, argv, 3);
	s.limits.backend = SHOAL_SANDBOX_NONE;
	s.env = env;
	s.nenv = 2;
	s.input = "in\n";
	s.input_len = 3;
	s.files = files;
	s.nfiles = 1;
	s.outputs = outs;
	s.noutputs = 1;
	job = run_spec(&s);
	CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_FAILED);
	CHECK_EQ_INT(oc(job)->exit_code, 7);
	CHECK(strncmp(out_of(job), "in\nstagedA=1\nPATH=/usr/bin:/bin\n", 31) == 0);
	CHECK_EQ_INT(oc(job)->noutputs, 1);
	CHECK(oc(job)->noutputs == 1 && strcmp(oc(job)->outputs[0].path, "out/o") == 0);
	shoal_sandbox_job_free(job);

	snprintf(script2, sizeof(script2), "sleep %s & sleep %s", tag(3), tag(3));
	spec_init(&s, argv2, 3);
	s.limits.backend = SHOAL_SANDBOX_NONE;
	s.limits.timeout_ms = 500;
	job = run_spec(&s);
	CHECK_EQ_INT(oc(job)->status, SHOAL_STATUS_TIMEOUT);
	shoal_sandbox_job_free(job);
	CHECK(host_procs_gone(sleeper, 2));

	/* a session too */
	{
		struct shoal_error err;

		spec_init(&s, NULL, 0);
		s.limits.backend = SHOAL_SANDBOX_NONE;
		CHECK(shoal_sandbox_session_open(&s, &job, &err) == SHOAL_OK);
		CHECK_EQ_INT(op_wait(job), SHOAL_STATUS_OK);
		CHECK_EQ_INT(swrite(job, "a/b.txt", "none"), SHOAL_STATUS_OK);
		CHECK_EQ_INT(sexec(job, "cat a/b.txt > c.txt", 0), SHOAL_STATUS_OK);
		CHECK_EQ_INT(sread(job, "c.txt"), SHOAL_STATUS_OK);
		CHECK_STR(out_of(job), "none");
		CHECK_EQ_INT(sexec(job, script2, 300), SHOAL_STATUS_TIMEOUT);
		CHECK(host_procs_gone(sleeper, 2));
		shoal_sandbox_job_free(job);
	}
}

static void sandbox_session_keeps_one_workspace(void)
{
	struct shoal_sandbox_job *s = session_open();
	struct shoal_error err;
	const char *argv[] = { "no-such-tool" };

	if (s == NULL) {
		CHECK(0);
		return;
	}
	CHECK_EQ_INT(sexec(s, "cat data/a.txt; echo made > new.txt; pwd", 0),
		     SHOAL_STATUS_OK);
	CHECK_STR(out_of(s), "abc/workspace\n");
	CHECK_EQ_INT(sread(s, "new.txt"), SHOAL_STATUS_OK);
	CHECK_STR(out_of(s), "made\n");
	CHECK_EQ_INT(swrite(s, "sub/dir/w.txt", "written"), SHOAL_STATUS_OK);
	CHECK_EQ_INT(sexec(s, "cat sub/dir/w.txt; stat -c %a sub/dir/w.txt", 0),
		     SHOAL_STATUS_OK);
	CHECK_STR(out_of(s), "written644\n");
	CHECK(shoal_sandbox_session_list(s, "", &err) == SHOAL_OK);
	CHECK_EQ_INT(op_wait(s), SHOAL_STATUS_OK);
	EXPECT_PROBE(s, "f 7 sub/dir/w.txt");
	EXPECT_PROBE(s, "d 0 sub");
	EXPECT_PROBE(s, "f 3 data/a.txt");
	CHECK(shoal_sandbox_session_list(s, "sub", &err) == SHOAL_OK);
	CHECK_EQ_INT(op_wait(s), SHOAL_STATUS_OK);
	CHECK_STR(out_of(s), "d 0 sub/dir\nf 7 sub/dir/w.txt\n");
	/* a failing command is a result, not the end of the session */
	CHECK_EQ_INT(sexec(s, "exit 4", 0), SHOAL_STATUS_FAILED);
	CHECK_EQ_INT(oc(s)->exit_code, 4);
	CHECK(shoal_sandbox_session_exec(s, argv, 1, 0, &err) == SHOAL_OK);
	CHECK_EQ_INT(op_wait(s), SHOAL_STATUS_ERROR);
	CHECK_STR(oc(s)->reason, "command not found: no-such-tool");
	/* one operation at a time */
	CHECK(shoal_sandbox_session_read(s, "new.txt", &err) == SHOAL_OK);
	CHECK_EQ_INT(shoal_sandbox_session_read(s, "new.txt", &err), SHOAL_EAGAIN);
	CHECK_EQ_INT(op_wait(s), SHOAL_STATUS_OK);
	CHECK_EQ_INT(sexec(s, "echo still-here", 0), SHOAL_STATUS_OK);
	CHECK_STR(out_of(s), "still-here\n");
	shoal_sandbox_job_free(s);
}

static void sandbox_session_limits_end_the_command_not_the_session(void)
{
	const char *sleeper[] = { "sleep", tag(4) };
	char script[128], bg[128];
	struct shoal_sandbox_job *s = session_open();

	if (s == NULL) {
		CHECK(0);
		return;
	}
	snprintf(script, sizeof(script), "sleep %s & sleep %s", tag(4), tag(4));
	snprintf(bg, sizeof(bg), "sleep %s & echo bg", tag(4));
	CHECK_EQ_INT(sexec(s, script, 300), SHOAL_STATUS_TIMEOUT);
	CHECK_STR(oc(s)->reason, "timed out after 300ms");
	CHECK(host_procs_gone(sleeper, 2));
	CHECK_EQ_INT(sexec(s, "head -c 100000 /dev/zero", 0), SHOAL_STATUS_LIMIT);
	CHECK_STR(oc(s)->reason, "output exceeded 64KiB");
	CHECK_EQ_INT(oc(s)->out.len, 64 * 1024);
	/* background processes never outlive their command */
	CHECK_EQ_INT(sexec(s, bg, 0), SHOAL_STATUS_OK);
	CHECK(host_procs_gone(sleeper, 2));
	/* cancel */
	{
		const char *argv[] = { "sleep", "60" };
		struct shoal_error err;

		CHECK(shoal_sandbox_session_exec(s, argv, 2, 0, &err) == SHOAL_OK);
		usleep(100000);
		shoal_sandbox_job_kill(s);
		CHECK_EQ_INT(op_wait(s), SHOAL_STATUS_CANCELLED);
	}
	CHECK_EQ_INT(sexec(s, "echo alive", 0), SHOAL_STATUS_OK);
	CHECK_STR(out_of(s), "alive\n");
	shoal_sandbox_job_free(s);
}

/* The workload controls the workspace: its symlinks, FIFOs and read-only
 * files must not turn a file operation into an escape or a hang. */
static void sandbox_session_file_operations_follow_no_links(void)
{
	struct shoal_sandbox_job *s = session_open();
	struct shoal_error err;

	if (s == NULL) {
		CHECK(0);
		return;
	}
	CHECK_EQ_INT(sexec(s, "ln -s /etc etclink && ln -s /etc/passwd pw && "
			   "mkfifo fifo && mkdir d && ln -s .. d/up", 0),
		     SHOAL_STATUS_OK);
	CHECK_EQ_INT(sread(s, "pw"), SHOAL_STATUS_ERROR);
	CHECK_STR(oc(s)->reason, "read pw: Too many levels of symbolic links");
	CHECK_EQ_INT(sread(s, "etclink/passwd"), SHOAL_STATUS_ERROR);
	CHECK_EQ_INT(sread(s, "d/up/data/a.txt"), SHOAL_STATUS_ERROR);
	CHECK_EQ_INT(sread(s, "fifo"), SHOAL_STATUS_ERROR);
	CHECK_EQ_INT(sread(s, "d"), SHOAL_STATUS_ERROR);
	CHECK_EQ_INT(swrite(s, "etclink/evil", "x"), SHOAL_STATUS_ERROR);
	CHECK_EQ_INT(swrite(s, "pw", "x"), SHOAL_STATUS_ERROR);
	CHECK_EQ_INT(swrite(s, "fifo", "x"), SHOAL_STATUS_ERROR);
	CHECK_EQ_INT(swrite(s, "data/a.txt", "x"), SHOAL_STATUS_ERROR);
	CHECK_EQ_INT(sread(s, "data/a.txt"), SHOAL_STATUS_OK);
	CHECK_STR(out_of(s), "abc");
	CHECK_EQ_INT(shoal_sandbox_session_read(s, "../x", &err), SHOAL_EINVAL);
	CHECK_EQ_INT(shoal_sandbox_session_write(s, "/etc/x", "x", 1, 0644, &err),
		     SHOAL_EINVAL);
	CHECK(shoal_sandbox_session_list(s, "", &err) == SHOAL_OK);
	CHECK_EQ_INT(op_wait(s), SHOAL_STATUS_OK);
	EXPECT_PROBE(s, "l 0 pw");
	EXPECT_PROBE(s, "l 0 d/up");
	EXPECT_PROBE(s, "o 0 fifo");
	CHECK(strstr(out_of(s), "passwd") == NULL);
	/* nothing was written through a link */
	CHECK_EQ_INT(sexec(s, "ls /etc/evil 2>&1; cat /etc/passwd | head -1", 0),
		     SHOAL_STATUS_OK);
	CHECK(strstr(out_of(s), "No such file") != NULL);
	shoal_sandbox_job_free(s);
}

static int sremove(struct shoal_sandbox_job *s, const char *path)
{
	struct shoal_error err;

	if (shoal_sandbox_session_remove(s, path, &err) != SHOAL_OK)
		return -1;
	return op_wait(s);
}

/* Added for apply_patch in sessions: remove unlinks without following a
 * link (a symlink itself goes, what it points to stays), never a folder;
 * read reports the file's mode; the workspace lists the same twice. */
static void sandbox_session_remove_follows_no_links(void)
{
	struct shoal_sandbox_job *s = session_open();
	struct shoal_error err;

	if (s == NULL) {
		CHECK(0);
		return;
	}
	CHECK_EQ_INT(sexec(s, "ln -s /etc etclink && echo k > keep && ln -s keep hn && "
			   "mkdir -p d/e && echo x > d/e/f && chmod 750 d/e/f", 0),
		     SHOAL_STATUS_OK);
	CHECK_EQ_INT(sremove(s, "etclink/passwd"), SHOAL_STATUS_ERROR);
	CHECK(oc(s)->op_errno == ELOOP || oc(s)->op_errno == ENOTDIR);
	CHECK_EQ_INT(sremove(s, "hn"), SHOAL_STATUS_OK);	/* the link */
	CHECK_EQ_INT(sremove(s, "d/e"), SHOAL_STATUS_ERROR);
	CHECK_EQ_INT(oc(s)->op_errno, EISDIR);
	CHECK_EQ_INT(sremove(s, "nope"), SHOAL_STATUS_ERROR);
	CHECK_EQ_INT(oc(s)->op_errno, ENOENT);
	CHECK_STR(oc(s)->reason, "remove nope: No such file or directory");
	CHECK_EQ_INT(shoal_sandbox_session_remove(s, "../x", &err), SHOAL_EINVAL);
	CHECK_EQ_INT(sread(s, "d/e/f"), SHOAL_STATUS_OK);
	CHECK_EQ_INT(oc(s)->mode, 0750);
	CHECK_EQ_INT(sremove(s, "d/e/f"), SHOAL_STATUS_OK);
	CHECK_EQ_INT(sexec(s, "ls -A d/e hn 2>&1; cat keep; test -s /etc/passwd && "
			   "echo passwd", 0), SHOAL_STATUS_OK);
	CHECK_STR(out_of(s), "ls: cannot access 'hn': No such file or directory\n"
		  "d/e:\nk\npasswd\n");
	CHECK(shoal_sandbox_session_list(s, "", &err) == SHOAL_OK);
	CHECK_EQ_INT(op_wait(s), SHOAL_STATUS_OK);
	EXPECT_PROBE(s, "f 3 data/a.txt");
	CHECK(shoal_sandbox_session_list(s, "", &err) == SHOAL_OK);
	CHECK_EQ_INT(op_wait(s), SHOAL_STATUS_OK);
	EXPECT_PROBE(s, "f 3 data/a.txt");
	CHECK(!shoal_sandbox_session_ended(s));
	shoal_sandbox_job_free(s);
}

/* Every init reaped, every job cgroup removed. */
static void sandbox_leaves_nothing_behind(void)
{
	static const char *const roots[] = { "/sys/fs/cgroup/memory",
					     "/sys/fs/cgroup/pids",
					     "/sys/fs/cgroup/unified", "/sys/fs/cgroup" };
	char cmd[512];
	size_t i;
	int tries;

	for (tries = 0; tries < 100 && shoal_sandbox_reap() > 0; tries++)
		usleep(50000);
	CHECK_EQ_INT(shoal_sandbox_reap(), 0);
	for (i = 0; i < SHOAL_ARRAY_LEN(roots); i++) {
		FILE *f;
		char line[256];

		snprintf(cmd, sizeof(cmd), "find %s -maxdepth 4 -type d -name "
			 "'shoal-%ld-*' 2>/dev/null", roots[i], (long)getpid());
		f = popen(cmd, "r");
		while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
			fprintf(stderr, "  left behind: %s", line);
			CHECK(0);
		}
		if (f != NULL)
			pclose(f);
	}
}

/* Copies the probe into /var/tmp/shoal-probe-XXXXXX (mode 0755). */
static int stage_probe(void)
{
	const char *src = getenv("SHOAL_TEST_PROBE");
	char cmd[1024];

	if (src == NULL)
		src = SHOAL_PROBE_DIR "/probe";
	snprintf(probe_dir, sizeof(probe_dir), "/var/tmp/shoal-probe-XXXXXX");
	if (mkdtemp(probe_dir) == NULL || chmod(probe_dir, 0755) != 0) {
		perror("staging the probe in /var/tmp");
		return -1;
	}
	snprintf(PROBE, sizeof(PROBE), "%s/probe", probe_dir);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && chmod 0755 '%s'", src, PROBE,
		 PROBE);
	probe_dirs[0] = probe_dir;
	return system(cmd) == 0 ? 0 : -1;
}

static void unstage_probe(void)
{
	unlink(PROBE);
	rmdir(probe_dir);
}

int main(void)
{
	struct shoal_error err;
	unsigned char rnd[8];
	char hex[17];

	shoal_log_setup(SHOAL_LOG_INFO, 0, "test_escape");
	signal(SIGPIPE, SIG_IGN);	/* as the worker does */
	/* a credential the harness would hold, set at run time */
	shoal_random_bytes(rnd, sizeof(rnd));
	shoal_hex(rnd, sizeof(rnd), hex);
	snprintf(secret, sizeof(secret), "redis-pass-%s", hex);
	setenv("REDIS_PASSWORD", secret, 1);
	setenv("SHOAL_TOKEN", secret, 1);

	if (stage_probe() != 0)
		return 1;
	if (shoal_sandbox_global_init(&err) != SHOAL_OK) {
		fprintf(stderr, "sandbox unavailable: %s\n", err.msg);
		unstage_probe();
		return 1;
	}
	shoal_sandbox_host_info(&host);
	fprintf(stderr, "running as uid %d; sandbox uid 1000 maps to host %u:%u; "
		"cgroups: memory %s, pids %s\n", (int)geteuid(), host.outer_uid,
		host.outer_gid, host.cgroup_memory ? "yes" : "no (RLIMIT_AS)",
		host.cgroup_pids ? "yes" : "no (RLIMIT_NPROC)");

	RUN(sandbox_runs_a_command);
	RUN(sandbox_reports_exit_codes_and_signals);
	RUN(sandbox_reports_command_not_found);
	RUN(sandbox_gives_input_on_stdin_and_in_workspace);
	RUN(sandbox_environment_is_exactly_the_spec);
	RUN(sandbox_stages_read_only_files);
	RUN(sandbox_collects_outputs_without_following_links);
	RUN(sandbox_system_tools_work);
	RUN(sandbox_runs_many_jobs_at_once);
	RUN(sandbox_runs_unprivileged_without_capabilities);
	RUN(sandbox_hides_the_harness_credentials);
	RUN(sandbox_sees_and_signals_no_host_process);
	RUN(sandbox_blocks_ptrace_and_process_vm);
	RUN(sandbox_blocks_host_sockets);
	RUN(sandbox_cannot_write_outside_the_workspace);
	RUN(sandbox_blocks_tiocsti);
	RUN(sandbox_blocks_nested_namespaces_and_mounts);
	RUN(sandbox_blocks_kernel_attack_surface);
	RUN(sandbox_blocks_foreign_syscall_abis);
	RUN(sandbox_setuid_binary_gains_nothing);
	RUN(sandbox_closes_leaked_descriptors);
	RUN(sandbox_contains_a_fork_bomb);
	RUN(sandbox_contains_a_memory_hog);
	RUN(sandbox_contains_a_disk_filler);
	RUN(sandbox_caps_an_output_flood);
	RUN(sandbox_stops_cpu_burners);
	RUN(sandbox_caps_collected_outputs);
	RUN(sandbox_timeout_kills_every_process);
	RUN(sandbox_kills_leftovers_when_the_command_exits);
	RUN(sandbox_cancel_kills_the_job);
	RUN(sandbox_rejects_bad_specs);
	RUN(sandbox_network_host_reaches_loopback);
	RUN(sandbox_runs_in_a_rootfs_folder);
	RUN(sandbox_none_backend_has_the_same_semantics);
	RUN(sandbox_session_keeps_one_workspace);
	RUN(sandbox_session_limits_end_the_command_not_the_session);
	RUN(sandbox_session_file_operations_follow_no_links);
	RUN(sandbox_session_remove_follows_no_links);
	RUN(sandbox_leaves_nothing_behind);
	unstage_probe();
	return test_done();
}
