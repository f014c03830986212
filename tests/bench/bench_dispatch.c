/* bench_dispatch.c - `dispatch`: N trivial subtasks (the built-in no-op, so
 * that process creation is not what is measured) through the whole path:
 * harness -> nng -> workers -> Redis (appendonly, everysec) -> merge.
 * Beside it, in the same run, the raw baselines: nng one-way message rate
 * (128-byte messages over ipc) and Redis pipelined SET rate (x32).
 * Prints `name value unit` lines; medians over REPEATS runs. */
#include <hiredis/hiredis.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "pool/sandbox.h"
#include "scheduler/embedded.h"

#define REPEATS 3

static double median(double *v, int n)
{
	int i, j;

	for (i = 1; i < n; i++)
		for (j = i; j > 0 && v[j - 1] > v[j]; j--) {
			double t = v[j];

			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return v[n / 2];
}

/* ---- raw nng: push/pull, 128-byte messages ---------------------------- */

struct nng_rx {
	nng_socket sock;
	int count;
};

static void *nng_receiver(void *arg)
{
	struct nng_rx *rx = arg;
	int i;

	for (i = 0; i < rx->count; i++) {
		nng_msg *m;

		if (nng_recvmsg(rx->sock, &m, 0) != 0)
			break;
		nng_msg_free(m);
	}
	return NULL;
}

static double nng_rate(const char *dir, int count)
{
	char url[512];
	nng_socket push, pull;
	struct nng_rx rx;
	pthread_t th;
	char payload[128];
	int64_t t0;
	int i;

	snprintf(url, sizeof(url), "ipc://%s/bench-nng.sock", dir);
	memset(payload, 'x', sizeof(payload));
	nng_pull0_open(&pull);
	nng_push0_open(&push);
	nng_listen(pull, url, NULL, 0);
	nng_dial(push, url, NULL, 0);
	rx.sock = pull;
	rx.count = count;
	pthread_create(&th, NULL, nng_receiver, &rx);
	t0 = shoal_now_us();
	for (i = 0; i < count; i++)
		nng_send(push, payload, sizeof(payload), 0);
	pthread_join(th, NULL);
	nng_close(push);
	nng_close(pull);
	return (double)count * 1e6 / (double)(shoal_now_us() - t0);
}

/* ---- raw Redis: pipelined SET x32 -------------------------------------- */

static double redis_rate(const char *url_path, int count)
{
	redisContext *c = redisConnectUnix(url_path);
	int64_t t0;
	int i, j;

	if (c == NULL || c->err)
		return 0;
	t0 = shoal_now_us();
	for (i = 0; i < count; i += 32) {
		for (j = 0; j < 32; j++)
			redisAppendCommand(c, "SET bench:%d %d", i + j, i + j);
		for (j = 0; j < 32; j++) {
			void *r;

			redisGetReply(c, &r);
			freeReplyObject(r);
		}
	}
	redisFree(c);
	return (double)count * 1e6 / (double)(shoal_now_us() - t0);
}

/* ---- raw sandbox launcher: n jobs of /bin/true, `conc` at a time ------- */

static double sandbox_rate(int n, int conc)
{
	static const char *const argv[] = { "/bin/true", NULL };
	static const char *const env[] = { "PATH=/usr/bin:/bin" };
	struct shoal_sandbox_job *jobs[64] = { 0 };
	struct shoal_sandbox_spec spec;
	struct shoal_error err = { 0, "" };
	int started = 0, finished = 0, i;
	int64_t t0;

	if (conc > 64 || shoal_sandbox_global_init(&err) != SHOAL_OK)
		return 0;
	memset(&spec, 0, sizeof(spec));
	spec.argv = argv;
	spec.argc = 1;
	spec.env = env;
	spec.nenv = 1;
	spec.limits.memory = 512u << 20;
	spec.limits.pids = 64;
	spec.limits.timeout_ms = 30000;
	spec.limits.disk = 64u << 20;
	spec.limits.max_output = 1u << 20;
	t0 = shoal_now_us();
	while (finished < n) {
		for (i = 0; i < conc; i++) {
			if (jobs[i] == NULL && started < n) {
				if (shoal_sandbox_start(&spec, &jobs[i], &err) != SHOAL_OK)
					return 0;
				started++;
			}
			if (jobs[i] != NULL && shoal_sandbox_job_step(jobs[i], shoal_now_ms()) != 0) {
				shoal_sandbox_job_free(jobs[i]);
				jobs[i] = NULL;
				finished++;
			}
		}
		usleep(50);
	}
	while (shoal_sandbox_reap() > 0)
		usleep(1000);
	return (double)n * 1e6 / (double)(shoal_now_us() - t0);
}

/* ---- the whole path --------------------------------------------------- */

static int write_true_config(const char *dir, int n)
{
	char path[512];
	FILE *f;
	int i;

	snprintf(path, sizeof(path), "%s/in/true.txt", dir);
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	for (i = 0; i < n; i++)
		fprintf(f, "%d\n", i);
	fclose(f);
	snprintf(path, sizeof(path), "%s/true.yaml", dir);
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "version: 1\nname: bench-sandboxed\n"
		"pool: {max_workers: 2, slots_per_worker: 8}\n"
		"stages:\n  - id: t\n    for_each: {files: \"in/true.txt\"}\n"
		"    split: {by: lines, size: 1}\n    run: [/bin/true]\n"
		"    merge: {strategy: concat}\n    output: out/true.txt\n");
	fclose(f);
	return 0;
}

static int write_inputs(const char *dir, int n, int slots, int workers)
{
	char path[512];
	FILE *f;
	int i;

	snprintf(path, sizeof(path), "%s/in", dir);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/in/items.txt", dir);
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	for (i = 0; i < n; i++)
		fprintf(f, "%d\n", i);
	fclose(f);
	snprintf(path, sizeof(path), "%s/bench.yaml", dir);
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "version: 1\nname: bench-dispatch\n"
		"pool: {max_workers: %d, slots_per_worker: %d}\n"
		"stages:\n  - id: noop\n    for_each: {files: \"in/items.txt\"}\n"
		"    split: {by: lines, size: 1}\n    run: builtin:noop\n"
		"    merge: {strategy: concat}\n    output: out/items.txt\n",
		workers, slots);
	fclose(f);
	return 0;
}

/* The harness's own peak RSS, from the JSON summary it prints. */
static long summary_rss(const char *path)
{
	char line[1024];
	const char *p;
	FILE *f = fopen(path, "r");
	long kb = 0;

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		p = strstr(line, "\"peak_rss_kb\":");
		if (p != NULL)
			kb = strtol(p + 14, NULL, 10);
	}
	fclose(f);
	return kb;
}

/* Runs `shoal run`; returns wall seconds and the harness's peak RSS (KiB). */
static double run_shoal(const char *bin, const char *dir, const char *config, int rep,
			long *rss_kb)
{
	char cfg[512], state[512], out[512];
	struct rusage ru;
	int64_t t0 = shoal_now_us();
	int status;
	pid_t pid;

	snprintf(cfg, sizeof(cfg), "%s/%s", dir, config);
	/* A fresh state dir per run: otherwise the embedded Redis first
	 * reloads the append-only file of the runs before. */
	snprintf(state, sizeof(state), "%s/.shoal-%d", dir, rep);
	snprintf(out, sizeof(out), "%s/summary.json", dir);
	fflush(stdout);	/* else the child's freopen flushes our buffer again */
	pid = fork();
	if (pid == 0) {
		if (freopen(out, "w", stdout) == NULL || freopen("/dev/null", "w", stderr) == NULL)
			_exit(126);
		execl(bin, bin, "run", cfg, "--state-dir", state, "--json", (char *)NULL);
		_exit(127);
	}
	if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		fprintf(stderr, "bench: shoal run failed (status %d)\n", status);
		return -1;
	}
	*rss_kb = summary_rss(out);
	return (double)(shoal_now_us() - t0) / 1e6;
}

/* Sandboxed /bin/true subtasks end to end, beside the raw launcher with
 * the same concurrency (2 workers x 8 slots = 16 jobs in flight). */
static int bench_sandboxed(const char *bin, const char *dir)
{
	const int n = 2000;
	double raw_v[REPEATS], e2e_v[REPEATS], wall;
	long rss = 0;
	int i;

	if (write_true_config(dir, n) != 0)
		return 1;
	for (i = 0; i < REPEATS; i++) {
		raw_v[i] = sandbox_rate(n, 16);
		wall = run_shoal(bin, dir, "true.yaml", 10 + i, &rss);
		if (wall <= 0 || raw_v[i] <= 0)
			return 1;
		e2e_v[i] = n / wall;
	}
	printf("sandbox_raw_launcher_16_inflight %.0f jobs/s\n", median(raw_v, REPEATS));
	printf("sandboxed_true_end_to_end %.0f subtasks/s\n", median(e2e_v, REPEATS));
	printf("sandboxed_end_to_end_vs_raw_launcher %.3f ratio\n",
	       median(e2e_v, REPEATS) / median(raw_v, REPEATS));
	return 0;
}

int main(int argc, char **argv)
{
	const char *bin = argc > 1 ? argv[1] : SHOAL_BIN_PATH;
	int n = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 100000;
	char dir[] = "/tmp/shoal-bench-XXXXXX";
	struct shoal_embedded_redis emb;
	struct shoal_error err = { 0, "" };
	double nng_v[REPEATS], redis_v[REPEATS], wall_v[REPEATS], rate_v[REPEATS];
	long rss = 0, max_rss = 0;
	int i;

	if (mkdtemp(dir) == NULL || write_inputs(dir, n, 256, 2) != 0)
		return 1;
	if (shoal_embedded_start(dir, &emb, &err) != SHOAL_OK) {
		fprintf(stderr, "bench: %s\n", err.msg);
		return 1;
	}
	for (i = 0; i < REPEATS; i++) {
		nng_v[i] = nng_rate(dir, 200000);
		redis_v[i] = redis_rate(emb.socket_path, 320000);
	}
	shoal_embedded_stop(&emb);
	for (i = 0; i < REPEATS; i++) {
		wall_v[i] = run_shoal(bin, dir, "bench.yaml", i, &rss);
		if (wall_v[i] <= 0)
			return 1;
		rate_v[i] = n / wall_v[i];
		if (rss > max_rss)
			max_rss = rss;
	}
	printf("baseline_nng_oneway_128B %.0f msg/s\n", median(nng_v, REPEATS));
	printf("baseline_redis_set_pipelined32 %.0f ops/s\n", median(redis_v, REPEATS));
	printf("dispatch_subtasks %d subtasks\n", n);
	printf("dispatch_wall_median %.3f s\n", median(wall_v, REPEATS));
	printf("dispatch_rate_median %.0f subtasks/s\n", median(rate_v, REPEATS));
	printf("dispatch_rate_vs_nng_oneway %.3f ratio\n",
	       median(rate_v, REPEATS) / median(nng_v, REPEATS));
	printf("dispatch_rate_vs_redis_pipelined %.3f ratio\n",
	       median(rate_v, REPEATS) / median(redis_v, REPEATS));
	printf("dispatch_harness_peak_rss %ld KiB\n", max_rss);
	return bench_sandboxed(bin, dir);
}
