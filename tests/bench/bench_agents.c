/* bench_agents.c - `agents` (issue 4): N LLM subagents, each two model
 * turns with one sandboxed `shell` tool call between them, against
 * bench_model_server holding every reply LATENCY_MS.  The figure is the
 * wall time of the whole `shoal run` command (start-up, embedded Redis,
 * workers and teardown included) beside the ideal, turns x latency.
 *
 * The run: one agent stage over N one-line items, tools [shell], the
 * model's max_concurrency N; 2 workers with N/2 sessions each, or more
 * workers of SESSIONS_PER_WORKER_MAX when N/2 is larger.  A run passes
 * when `shoal run` exits 0, every output line is "done" and the server saw
 * every shell result start "exit code: 0" (a refused op must not pass for
 * a fast one).
 *
 * Prints `name value unit` lines per N (agents_nN_...), medians of 3 runs
 * for N <= 1000, one run above; agents_nN_failed when a run failed or hung
 * (its log's tail and the server's counters go to stderr; the others go
 * on).  What each figure is measured on:
 *   wall            fork of `shoal run` -> its exit (a pidfd), here
 *   run_seconds     the run's own clock, from its --json summary
 *   harness_peak_rss  the harness process alone: getrusage(RUSAGE_SELF)
 *                   at the end of the run, from the --json summary (workers
 *                   and redis-server are other processes)
 *   harness_cpu, cpu_per_turn  the harness's own user+sys CPU (and that
 *                   over model turns), read from /proc/PID/stat while it is
 *                   a zombie (waitid WNOWAIT): wait4 would add in the
 *                   workers, redis-server and sandboxes; clock ticks, 10 ms
 *   children_cpu    what the harness's reaped children used (workers, their
 *                   sandboxes, redis-server)
 *   model_turns     requests the server answered (2 per subagent unless
 *                   something was retried)
 *   server_max_concurrent  the most requests the server held at once
 *   first/last_turn1/turn2_request  when the server received the first and
 *                   the last request of each turn, from the fork: where the
 *                   time between the ideal and the wall went
 *
 * Before each run it waits (up to QUIET_WAIT_S) for the host's CPUs to be
 * idle and says so when they are not: harness, workers, sandboxes and the
 * server share them.  RLIMIT_NOFILE is raised for the children to inherit.
 *
 * Usage: bench_agents [SHOAL [SERVER [N ...]]]   (N defaults: 100 1000 10000)
 */
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"

#define LATENCY_MS 200
#define TURNS 2			/* tool call, then "done" */
#define REPEATS_SMALL 3		/* for N <= SMALL_MAX */
#define SMALL_MAX 1000
#define RUN_TIMEOUT_BASE_MS (120 * 1000)	/* plus RUN_TIMEOUT_PER_AGENT_MS x N */
#define RUN_TIMEOUT_PER_AGENT_MS 30
#define MAX_NS 16
#define NOFILE_WANTED ((rlim_t)1 << 20)
#define QUIET_BUSY_MAX 0.15		/* of all CPUs, before a run */
#define QUIET_WAIT_S 120
#define LOG_TAIL_LINES 20
#define SESSIONS_PER_WORKER_MAX 2500	/* config allows 4000; more workers
					 * share the sandbox start-ups */

/* Issue 4's targets. */
#define TARGET_N1000_WALL_S 1.2
#define TARGET_N1000_RSS_KB (64 * 1024)
#define TARGET_N10000_RSS_KB (256 * 1024)

struct run_result {
	double wall_s;
	double harness_s;		/* the summary's "seconds" */
	double cpu_s;			/* the harness's own user+sys */
	double children_cpu_s;
	long rss_kb;
	unsigned long long turns, max_concurrent, bad_requests;
	unsigned long long tools_ok, tools_bad;	/* shell results the server saw */
	double host_busy;		/* before the run, from /proc/stat */
	/* The server's timeline, ms from just before the fork: the first and
	 * last first-turn and second-turn requests it received. */
	double first_tool_ms, last_tool_ms, first_final_ms, last_final_ms;
};

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

/* The harness inherits this: N connections to the model server, plus nng,
 * Redis and the merge, must fit. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < NOFILE_WANTED) {
		struct rlimit up = { NOFILE_WANTED, NOFILE_WANTED };

		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			return;
	}
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
}

/* ---- the model server --------------------------------------------------- */

/* Starts the server; returns its pid and sets *port, or -1. */
static pid_t start_server(const char *bin, int *port)
{
	char line[64], lat[16];
	int fds[2];
	FILE *f;
	pid_t pid;

	snprintf(lat, sizeof(lat), "%d", LATENCY_MS);
	if (pipe(fds) != 0)
		return -1;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execl(bin, bin, "--port", "0", "--latency-ms", lat, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	f = fdopen(fds[0], "r");
	if (pid < 0 || f == NULL || fgets(line, sizeof(line), f) == NULL ||
	    strncmp(line, "PORT ", 5) != 0) {
		if (f != NULL)
			fclose(f);
		return -1;
	}
	fclose(f);
	*port = (int)strtol(line + 5, NULL, 10);
	return *port > 0 ? pid : -1;
}

/* GET path from the server; the body (NUL-terminated) into buf. */
static int http_get(int port, const char *path, char *buf, size_t cap)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char req[256];
	size_t len = 0;
	char *body;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), n;

	if (fd < 0)
		return -1;
	n = snprintf(req, sizeof(req),
		     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    write(fd, req, (size_t)n) != n) {
		close(fd);
		return -1;
	}
	for (;;) {
		ssize_t r = read(fd, buf + len, cap - 1 - len);

		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	buf[len] = '\0';
	body = strstr(buf, "\r\n\r\n");
	if (body == NULL)
		return -1;
	memmove(buf, body + 4, strlen(body + 4) + 1);
	return 0;
}

/* The number after "key": in a flat JSON object; 0 when absent. */
static unsigned long long json_number(const char *text, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(text, pat);
	return p ? strtoull(p + strlen(pat), NULL, 10) : 0;
}

/* The string after "key":" in a flat JSON object, into out (escapes kept). */
static void json_text(const char *text, const char *key, char *out, size_t cap)
{
	char pat[64];
	const char *p;
	size_t n = 0;

	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	p = strstr(text, pat);
	for (p = p ? p + strlen(pat) : ""; *p != '\0' && *p != '"' && n + 1 < cap; p++) {
		if (*p == '\\' && p[1] != '\0')
			out[n++] = *p++;
		if (n + 1 < cap)
			out[n++] = *p;
	}
	out[n] = '\0';
}

/* ---- inputs ------------------------------------------------------------ */

static int write_run(const char *dir, int n, int port)
{
	char path[512];
	int workers = n > 2 * SESSIONS_PER_WORKER_MAX ?
		(n + SESSIONS_PER_WORKER_MAX - 1) / SESSIONS_PER_WORKER_MAX : 2;
	int per_worker = (n + workers - 1) / workers;
	FILE *f;
	int i;

	snprintf(path, sizeof(path), "%s/n%d", dir, n);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/n%d/in", dir, n);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/n%d/in/items.txt", dir, n);
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	for (i = 0; i < n; i++)
		fprintf(f, "item %d\n", i);
	fclose(f);
	snprintf(path, sizeof(path), "%s/n%d/run.yaml", dir, n);
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "version: 1\nname: bench-agents-%d\n"
		"pool: {max_workers: %d, sessions_per_worker: %d}\n"
		"models:\n  fast:\n    base_url: \"http://127.0.0.1:%d/v1\"\n"
		"    api_key: \"sk-bench\"\n    model: test\n"
		"    max_concurrency: %d\n"
		"agents:\n  a:\n    model: fast\n    instructions: \"Run true.\"\n"
		"    prompt: \"{{input}}\"\n    tools: [shell]\n    max_turns: 4\n"
		"stages:\n  - id: s\n    for_each: {files: \"in/items.txt\"}\n"
		"    split: {by: lines, size: 1}\n    agent: a\n"
		"    merge: {strategy: concat}\n    output: out/o.txt\n",
		n, workers, per_worker < 1 ? 1 : per_worker, port, n);
	fclose(f);
	return 0;
}

/* Every subagent answered "done". */
static int check_output(const char *dir, int n)
{
	char path[512], line[64];
	FILE *f;
	int count = 0, bad = 0;

	snprintf(path, sizeof(path), "%s/n%d/out/o.txt", dir, n);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		count++;
		bad += strcmp(line, "done\n") != 0;
	}
	fclose(f);
	if (count != n || bad != 0) {
		fprintf(stderr, "bench: %s has %d lines, %d not \"done\"; want %d\n",
			path, count, bad, n);
		return -1;
	}
	return 0;
}

/* ---- a quiet host ------------------------------------------------------- */

/* Busy and total jiffies of all CPUs so far, from /proc/stat. */
static int cpu_jiffies(unsigned long long *busy, unsigned long long *total)
{
	char line[512], *p, *end;
	unsigned long long v;
	FILE *f = fopen("/proc/stat", "r");
	int i;

	if (f == NULL)
		return -1;
	p = fgets(line, sizeof(line), f);
	fclose(f);
	if (p == NULL || strncmp(line, "cpu ", 4) != 0)
		return -1;
	*busy = *total = 0;
	p = line + 4;
	for (i = 0; i < 8; i++) {	/* user nice system idle iowait irq softirq steal */
		v = strtoull(p, &end, 10);
		if (end == p)
			return -1;
		p = end;
		*total += v;
		if (i != 3 && i != 4)
			*busy += v;
	}
	return 0;
}

/* The share of the machine's CPU in use over the next `ms`. */
static double host_busy(int ms)
{
	unsigned long long b0, t0, b1, t1;

	if (cpu_jiffies(&b0, &t0) != 0)
		return 0;
	usleep((useconds_t)ms * 1000);
	if (cpu_jiffies(&b1, &t1) != 0 || t1 <= t0)
		return 0;
	return (double)(b1 - b0) / (double)(t1 - t0);
}

/* The figures mean little on a busy machine (the harness, workers,
 * sandboxes and the server share its CPUs): wait up to QUIET_WAIT_S for
 * it to calm down, then go on and say so. */
static double wait_quiet(void)
{
	double busy = host_busy(500);
	int i;

	for (i = 0; i < QUIET_WAIT_S * 2 && busy > QUIET_BUSY_MAX; i++)
		busy = host_busy(500);
	if (busy > QUIET_BUSY_MAX)
		fprintf(stderr, "bench: warning: the host is %.0f%% busy with other "
			"work; the figures below are not clean\n", busy * 100);
	return busy;
}

/* ---- one `shoal run` ----------------------------------------------------- */

/* From the --json summary line: peak_rss_kb and seconds. */
static int read_summary(const char *path, struct run_result *r)
{
	char line[1024];
	const char *p;
	FILE *f = fopen(path, "r");
	int found = 0;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		p = strstr(line, "\"peak_rss_kb\":");
		if (p == NULL)
			continue;
		r->rss_kb = strtol(p + 14, NULL, 10);
		p = strstr(line, "\"seconds\":");
		r->harness_s = p ? strtod(p + 10, NULL) : 0;
		found = 1;
	}
	fclose(f);
	return found ? 0 : -1;
}

/* user+sys of a zombie (not yet reaped) from /proc/PID/stat: its own, and
 * its reaped children's.  Fields 14-17 after the "(comm)". */
static int zombie_cpu(pid_t pid, double *own, double *children)
{
	char path[64], buf[2048];
	unsigned long long v[4];
	double tick = (double)sysconf(_SC_CLK_TCK);
	char *p, *end;
	FILE *f;
	int i;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	p = p ? strrchr(buf, ')') : NULL;
	if (p == NULL)
		return -1;
	p += 2;				/* field 3, the state */
	for (i = 3; i < 14; i++) {
		p = strchr(p, ' ');
		if (p == NULL)
			return -1;
		p++;
	}
	for (i = 0; i < 4; i++) {
		v[i] = strtoull(p, &end, 10);
		if (end == p)
			return -1;
		p = end;
	}
	*own = (double)(v[0] + v[1]) / tick;
	*children = (double)(v[2] + v[3]) / tick;
	return 0;
}

/* Waits for pid to exit (not reaping it) for up to timeout_ms; 0 when it
 * exited, -1 when it did not. */
static int wait_exit(pid_t pid, int timeout_ms)
{
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	siginfo_t si;
	int rc;

	if (pfd < 0)
		return -1;
	do {
		struct pollfd p = { .fd = pfd, .events = POLLIN };

		rc = poll(&p, 1, timeout_ms);
	} while (rc < 0 && errno == EINTR);
	close(pfd);
	if (rc != 1)
		return -1;
	memset(&si, 0, sizeof(si));
	return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT);
}

/* Stops a child of ours: `shoal run` lets running subtasks finish on the
 * first SIGTERM and cancels them on the second. */
static void stop_child(pid_t pid)
{
	kill(pid, SIGTERM);
	if (wait_exit(pid, 5000) == 0)
		goto reap;
	kill(pid, SIGTERM);
	if (wait_exit(pid, 30000) != 0)
		kill(pid, SIGKILL);
reap:
	waitpid(pid, NULL, 0);
}

static int is_progress(const char *line, size_t n)
{
	static const char tag[] = "\"event\":\"progress\"";

	return memmem(line, n, tag, sizeof(tag) - 1) != NULL;
}

/* The length of the line at p (with its newline) in [p, end). */
static size_t line_len(const char *p, const char *end)
{
	const char *nl = memchr(p, '\n', (size_t)(end - p));

	return nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
}

/* The last lines of a run's log, without its once-a-second progress
 * events, for a run that failed or hung. */
static void show_log_tail(const char *path)
{
	struct shoal_error err = { 0, "" };
	char *data = NULL, *end, *p;
	size_t len = 0, shown = 0;

	if (shoal_read_file(path, (size_t)256 << 20, &data, &len, &err) != SHOAL_OK) {
		fprintf(stderr, "bench: %s\n", err.msg);
		return;
	}
	end = data + len;
	p = end;
	while (p > data && shown < LOG_TAIL_LINES) {	/* back to where to start */
		char *start = p - 1;

		while (start > data && start[-1] != '\n')
			start--;
		shown += !is_progress(start, (size_t)(p - start));
		p = start;
	}
	while (p < end) {
		size_t n = line_len(p, end);

		if (!is_progress(p, n))
			fwrite(p, 1, n, stderr);
		p += n;
	}
	free(data);
}

static int run_shoal(const char *bin, const char *dir, int n, int rep, struct run_result *r)
{
	char cfg[512], state[512], out[512], log[512];
	int timeout_ms = RUN_TIMEOUT_BASE_MS + RUN_TIMEOUT_PER_AGENT_MS * n;
	int64_t t0;
	int status;
	pid_t pid;

	snprintf(cfg, sizeof(cfg), "%s/n%d/run.yaml", dir, n);
	snprintf(state, sizeof(state), "%s/n%d/state-%d", dir, n, rep);
	snprintf(out, sizeof(out), "%s/n%d/summary-%d.json", dir, n, rep);
	snprintf(log, sizeof(log), "%s/n%d/stderr-%d.log", dir, n, rep);
	fflush(stdout);
	t0 = shoal_now_us();
	pid = fork();
	if (pid == 0) {
		if (freopen(out, "w", stdout) == NULL || freopen(log, "w", stderr) == NULL)
			_exit(126);
		execl(bin, bin, "run", cfg, "--state-dir", state, "--json", (char *)NULL);
		_exit(127);
	}
	if (pid < 0)
		return -1;
	if (wait_exit(pid, timeout_ms) != 0) {
		fprintf(stderr, "bench: N=%d: shoal run did not finish in %d s; the end of %s:\n",
			n, timeout_ms / 1000, log);
		stop_child(pid);
		show_log_tail(log);
		return -1;
	}
	r->wall_s = (double)(shoal_now_us() - t0) / 1e6;
	if (zombie_cpu(pid, &r->cpu_s, &r->children_cpu_s) != 0)
		r->cpu_s = r->children_cpu_s = 0;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		fprintf(stderr, "bench: N=%d: shoal run failed (status %d); the end of %s:\n",
			n, status, log);
		show_log_tail(log);
		return -1;
	}
	return read_summary(out, r);
}

/* What the server saw; also printed when a run failed or hung, since it
 * tells how far the conversations got. */
static int server_stats(int port, int n, struct run_result *r, int show)
{
	char stats[2048], bad[200];

	if (http_get(port, "/stats", stats, sizeof(stats)) != 0)
		return -1;
	if (show)
		fprintf(stderr, "bench: N=%d: the model server saw %s\n", n, stats);
	r->tools_ok = json_number(stats, "tool_results_ok");
	r->tools_bad = json_number(stats, "tool_results_bad");
	if (r->tools_bad > 0) {
		json_text(stats, "first_bad_result", bad, sizeof(bad));
		fprintf(stderr, "bench: N=%d: %llu shell calls did not succeed, the first "
			"said: %s\n", n, r->tools_bad, bad);
	}
	r->turns = json_number(stats, "requests");
	r->max_concurrent = json_number(stats, "max_concurrent");
	r->bad_requests = json_number(stats, "bad_requests");
	r->first_tool_ms = (double)json_number(stats, "first_tool_ms");
	r->last_tool_ms = (double)json_number(stats, "last_tool_ms");
	r->first_final_ms = (double)json_number(stats, "first_final_ms");
	r->last_final_ms = (double)json_number(stats, "last_final_ms");
	return 0;
}

/* One run with the server's counters around it. */
static int measure(const char *bin, const char *dir, int port, int n, int rep,
		   struct run_result *r)
{
	char reply[256];

	memset(r, 0, sizeof(*r));
	r->host_busy = wait_quiet();
	if (http_get(port, "/reset", reply, sizeof(reply)) != 0)
		return -1;
	if (run_shoal(bin, dir, n, rep, r) != 0) {
		(void)server_stats(port, n, r, 1);
		return -1;
	}
	if (server_stats(port, n, r, 0) != 0 || check_output(dir, n) != 0 ||
	    r->tools_bad > 0)
		return -1;
	fprintf(stderr, "bench: N=%d run %d: %.3f s wall, %.3f s in the run, %ld KiB, "
		"%.2f s CPU (children %.2f s), %llu turns, %llu at once; host %.0f%% busy before\n",
		n, rep + 1, r->wall_s, r->harness_s, r->rss_kb, r->cpu_s, r->children_cpu_s,
		r->turns, r->max_concurrent, r->host_busy * 100);
	fprintf(stderr, "bench:   turn 1 requests at %.0f-%.0f ms, turn 2 at %.0f-%.0f ms\n",
		r->first_tool_ms, r->last_tool_ms, r->first_final_ms, r->last_final_ms);
	return 0;
}

/* ---- figures ------------------------------------------------------------- */

static void report(int n, struct run_result *rs, int reps)
{
	double wall[REPEATS_SMALL], hs[REPEATS_SMALL], rss[REPEATS_SMALL];
	double cpt[REPEATS_SMALL], cpu[REPEATS_SMALL], ccpu[REPEATS_SMALL];
	double t[4][REPEATS_SMALL];
	double ideal = TURNS * LATENCY_MS / 1000.0;
	unsigned long long turns = 0, conc = 0, bad = 0;
	int i;

	for (i = 0; i < reps; i++) {
		wall[i] = rs[i].wall_s;
		hs[i] = rs[i].harness_s;
		rss[i] = (double)rs[i].rss_kb;
		cpu[i] = rs[i].cpu_s;
		ccpu[i] = rs[i].children_cpu_s;
		t[0][i] = rs[i].first_tool_ms;
		t[1][i] = rs[i].last_tool_ms;
		t[2][i] = rs[i].first_final_ms;
		t[3][i] = rs[i].last_final_ms;
		cpt[i] = rs[i].turns ? rs[i].cpu_s * 1000.0 / (double)rs[i].turns : 0;
		turns = rs[i].turns > turns ? rs[i].turns : turns;
		conc = rs[i].max_concurrent > conc ? rs[i].max_concurrent : conc;
		bad += rs[i].bad_requests;
	}
	printf("agents_n%d_runs %d runs\n", n, reps);
	printf("agents_n%d_wall_median %.3f s\n", n, median(wall, reps));
	printf("agents_n%d_ideal %.3f s\n", n, ideal);
	printf("agents_n%d_wall_vs_ideal %.2f ratio\n", n, median(wall, reps) / ideal);
	printf("agents_n%d_run_seconds_median %.3f s\n", n, median(hs, reps));
	printf("agents_n%d_harness_peak_rss_median %.0f KiB\n", n, median(rss, reps));
	printf("agents_n%d_harness_cpu_median %.3f s\n", n, median(cpu, reps));
	printf("agents_n%d_cpu_per_turn_median %.3f ms\n", n, median(cpt, reps));
	printf("agents_n%d_children_cpu_median %.3f s\n", n, median(ccpu, reps));
	printf("agents_n%d_model_turns %llu turns\n", n, turns);
	printf("agents_n%d_server_max_concurrent %llu requests\n", n, conc);
	printf("agents_n%d_first_turn1_request_median %.0f ms\n", n, median(t[0], reps));
	printf("agents_n%d_last_turn1_request_median %.0f ms\n", n, median(t[1], reps));
	printf("agents_n%d_first_turn2_request_median %.0f ms\n", n, median(t[2], reps));
	printf("agents_n%d_last_turn2_request_median %.0f ms\n", n, median(t[3], reps));
	if (bad != 0)
		printf("agents_n%d_server_bad_requests %llu requests\n", n, bad);
	if (n == 1000) {
		printf("agents_n1000_wall_vs_target %.2f ratio\n",
		       median(wall, reps) / TARGET_N1000_WALL_S);
		printf("agents_n1000_rss_vs_target %.2f ratio\n",
		       median(rss, reps) / TARGET_N1000_RSS_KB);
	}
	if (n == 10000)
		printf("agents_n10000_rss_vs_target %.2f ratio\n",
		       median(rss, reps) / TARGET_N10000_RSS_KB);
	fflush(stdout);
}

static int bench_n(const char *bin, const char *dir, int port, int n)
{
	struct run_result rs[REPEATS_SMALL];
	int reps = n <= SMALL_MAX ? REPEATS_SMALL : 1, i;

	if (write_run(dir, n, port) != 0)
		return -1;
	for (i = 0; i < reps; i++) {
		if (measure(bin, dir, port, n, i, &rs[i]) != 0) {
			printf("agents_n%d_failed 1 run\n", n);
			fflush(stdout);
			return -1;
		}
	}
	report(n, rs, reps);
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int main(int argc, char **argv)
{
	const char *bin = argc > 1 ? argv[1] : SHOAL_BIN_PATH;
	const char *server = argc > 2 ? argv[2] : BENCH_SERVER_PATH;
	int ns[MAX_NS] = { 100, 1000, 10000 };
	int nn = 3, port = 0, rc = 0, i;
	char dir[] = "/tmp/shoal-bench-agents-XXXXXX";
	pid_t srv;

	if (argc > 3) {
		nn = 0;
		for (i = 3; i < argc && nn < MAX_NS; i++)
			ns[nn++] = (int)strtol(argv[i], NULL, 10);
	}
	raise_nofile();
	if (mkdtemp(dir) == NULL)
		return 1;
	srv = start_server(server, &port);
	if (srv < 0) {
		fprintf(stderr, "bench: %s did not start\n", server);
		return 1;
	}
	for (i = 0; i < nn; i++) {	/* a failed N does not stop the others */
		if (ns[i] < 1 || bench_n(bin, dir, port, ns[i]) != 0)
			rc = 1;
	}
	stop_child(srv);
	if (rc == 0)
		nftw(dir, rm_entry, 64, FTW_DEPTH | FTW_PHYS);
	else
		fprintf(stderr, "bench: left %s for a look\n", dir);
	return rc;
}
