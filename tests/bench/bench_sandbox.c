/* bench_sandbox.c - what a native sandbox costs, against raw fork+exec of
 * the same program measured in the same run: a whole job (start, exec,
 * teardown) with and without a network namespace and with cgroup limits,
 * one command in an open session, and jobs/s with many in flight.  Prints
 * one "name value unit" line per figure.
 *
 *   bench_sandbox [iterations] [concurrency] [program]
 *
 * defaults: 300 iterations, 16 concurrent jobs, /bin/true. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "pool/sandbox.h"

static const char *prog = "/bin/true";
static const char *env[] = { "PATH=/usr/bin:/bin" };

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static void print_stats(const char *name, int64_t *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_i64);
	printf("%s_median %lld us\n", name, (long long)v[n / 2]);
	printf("%s_p99 %lld us\n", name, (long long)v[(n * 99) / 100 >= n ? n - 1
						     : (n * 99) / 100]);
}

static pid_t raw_spawn(void)
{
	char *argv[] = { (char *)prog, NULL };
	pid_t pid = fork();

	if (pid == 0) {
		execve(prog, argv, (char **)env);
		_exit(127);
	}
	return pid;
}

static int64_t raw_once(void)
{
	int64_t t0 = shoal_now_us();
	pid_t pid = raw_spawn();
	int st;

	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return shoal_now_us() - t0;
}

static void spec_init(struct shoal_sandbox_spec *s, const char **argv, int netns)
{
	memset(s, 0, sizeof(*s));
	s->argv = argv;
	s->argc = 1;
	s->env = env;
	s->nenv = 1;
	s->limits.backend = SHOAL_SANDBOX_NATIVE;
	s->limits.network_host = (uint8_t)!netns;
	s->limits.timeout_ms = 30000;
	s->limits.disk = 64u << 20;
	s->limits.max_output = 8u << 20;
}

static void with_limits(struct shoal_sandbox_spec *s)
{
	s->limits.memory = 512u << 20;
	s->limits.pids = 256;
	s->limits.cpu_time_ms = 60000;
}

static struct shoal_sandbox_job *start(const struct shoal_sandbox_spec *s)
{
	struct shoal_sandbox_job *job = NULL;
	struct shoal_error err;

	if (shoal_sandbox_start(s, &job, &err) != SHOAL_OK) {
		fprintf(stderr, "bench_sandbox: %s\n", err.msg);
		exit(1);
	}
	return job;
}

/* Steps a job (or a session's operation) to its end; it must succeed. */
static void finish_step(struct shoal_sandbox_job *job)
{
	while (shoal_sandbox_job_step(job, shoal_now_ms()) == 0) {
		struct pollfd p = { shoal_sandbox_job_fd(job), POLLIN, 0 };

		(void)poll(&p, 1, 1000);
	}
	if (shoal_sandbox_job_outcome(job)->status != SHOAL_STATUS_OK) {
		fprintf(stderr, "bench_sandbox: job failed: %s\n",
			shoal_sandbox_job_outcome(job)->reason);
		exit(1);
	}
}

static int64_t sandbox_once(const struct shoal_sandbox_spec *s)
{
	int64_t t0 = shoal_now_us();
	struct shoal_sandbox_job *job = start(s);

	finish_step(job);
	shoal_sandbox_job_free(job);
	return shoal_now_us() - t0;
}

/* One command in an open session: what an agent's tool call costs once
 * its sandbox exists. */
static void session_exec_stats(const char **argv, int iters, int64_t *v)
{
	struct shoal_sandbox_spec s;
	struct shoal_sandbox_job *job = NULL;
	struct shoal_error err;
	int i;

	spec_init(&s, argv, 1);
	s.argc = 0;
	if (shoal_sandbox_session_open(&s, &job, &err) != SHOAL_OK) {
		fprintf(stderr, "bench_sandbox: %s\n", err.msg);
		exit(1);
	}
	finish_step(job);
	for (i = 0; i < iters; i++) {
		int64_t t0 = shoal_now_us();

		if (shoal_sandbox_session_exec(job, argv, 1, 0, &err) != SHOAL_OK) {
			fprintf(stderr, "bench_sandbox: %s\n", err.msg);
			exit(1);
		}
		finish_step(job);
		v[i] = shoal_now_us() - t0;
	}
	shoal_sandbox_job_free(job);
}

/* Jobs per second with `conc` jobs in flight, `total` in all. */
static double raw_throughput(int total, int conc)
{
	int64_t t0 = shoal_now_us();
	int started = 0, done = 0, running = 0;

	while (done < total) {
		while (running < conc && started < total) {
			raw_spawn();
			started++;
			running++;
		}
		if (wait(NULL) > 0) {
			done++;
			running--;
		}
	}
	return total / ((double)(shoal_now_us() - t0) / 1e6);
}

static double sandbox_throughput(const struct shoal_sandbox_spec *s, int total,
				 int conc)
{
	struct shoal_sandbox_job **jobs = calloc((size_t)conc, sizeof(*jobs));
	struct pollfd *p = calloc((size_t)conc, sizeof(*p));
	int64_t t0 = shoal_now_us();
	int started = 0, done = 0, i;

	while (done < total) {
		int n = 0;

		for (i = 0; i < conc; i++) {
			if (jobs[i] == NULL && started < total) {
				jobs[i] = start(s);
				started++;
			}
			if (jobs[i] == NULL)
				continue;
			if (shoal_sandbox_job_step(jobs[i], shoal_now_ms()) == 1) {
				shoal_sandbox_job_free(jobs[i]);
				jobs[i] = NULL;
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
	free(jobs);
	free(p);
	return total / ((double)(shoal_now_us() - t0) / 1e6);
}

int main(int argc, char **argv)
{
	int iters = argc > 1 ? atoi(argv[1]) : 300;
	int conc = argc > 2 ? atoi(argv[2]) : 16;
	const char *sargv[1];
	struct shoal_sandbox_spec s;
	struct shoal_error err;
	int64_t *v;
	int64_t raw_med, sb_med;
	int i;

	if (argc > 3)
		prog = argv[3];
	if (iters < 10 || conc < 1) {
		fprintf(stderr, "usage: bench_sandbox [iterations>=10] [concurrency] [program]\n");
		return 2;
	}
	if (shoal_sandbox_global_init(&err) != SHOAL_OK) {
		fprintf(stderr, "bench_sandbox: %s\n", err.msg);
		return 1;
	}
	sargv[0] = prog;
	v = calloc((size_t)iters, sizeof(*v));

	for (i = 0; i < 20; i++)	/* warm caches */
		(void)raw_once();
	for (i = 0; i < iters; i++)
		v[i] = raw_once();
	print_stats("raw_fork_exec", v, iters);
	raw_med = v[iters / 2];

	spec_init(&s, sargv, 1);
	for (i = 0; i < 10; i++)
		(void)sandbox_once(&s);
	for (i = 0; i < iters; i++)
		v[i] = sandbox_once(&s);
	print_stats("sandbox_netns", v, iters);
	sb_med = v[iters / 2];
	printf("sandbox_netns_ratio %.2f x\n", (double)sb_med / (double)raw_med);

	spec_init(&s, sargv, 0);
	for (i = 0; i < iters; i++)
		v[i] = sandbox_once(&s);
	print_stats("sandbox_no_netns", v, iters);

	spec_init(&s, sargv, 1);
	with_limits(&s);
	for (i = 0; i < iters; i++)
		v[i] = sandbox_once(&s);
	print_stats("sandbox_netns_cgroup_limits", v, iters);

	session_exec_stats(sargv, iters, v);
	print_stats("session_exec", v, iters);
	printf("session_exec_ratio %.2f x\n", (double)v[iters / 2] / (double)raw_med);

	printf("raw_jobs_per_s_c%d %.0f jobs/s\n", conc, raw_throughput(iters * 2, conc));
	spec_init(&s, sargv, 1);
	printf("sandbox_jobs_per_s_c%d %.0f jobs/s\n", conc,
	       sandbox_throughput(&s, iters * 2, conc));
	free(v);
	return 0;
}
