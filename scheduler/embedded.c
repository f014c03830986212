/* embedded.c - start and stop the private redis-server of a state dir. */
#include "scheduler/embedded.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

/* How long redis-server may take to open its socket. */
#define EMBEDDED_START_MS 10000

/* 1 when a Redis on path answers PING with PONG (not LOADING, not busy). */
static int socket_answers(const char *path)
{
	static const char ping[] = "PING\r\n";
	struct sockaddr_un sa;
	struct timeval tv = { 1, 0 };
	char reply[64];
	ssize_t n;
	int fd, ok = 0;

	if (strlen(path) >= sizeof(sa.sun_path))
		return 0;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	shoal_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    write(fd, ping, sizeof(ping) - 1) == (ssize_t)(sizeof(ping) - 1)) {
		n = read(fd, reply, sizeof(reply) - 1);
		ok = n >= 5 && strncmp(reply, "+PONG", 5) == 0;
	}
	close(fd);
	return ok;
}

/* The parent pid of pid, or -1. */
static long parent_of(long pid)
{
	char path[64], line[256];
	long ppid = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "PPid:", 5) == 0)
			ppid = strtol(line + 5, NULL, 10);
	fclose(f);
	return ppid;
}

/* A server whose harness died (its parent is now pid 1, and it got
 * SIGTERM) still answers while it shuts down: reusing it would lose the
 * connection moments later.  Wait for it to go, then start our own. */
static void wait_for_orphan(const char *dir)
{
	char path[600], *text = NULL;
	int64_t deadline = shoal_now_ms() + EMBEDDED_START_MS;
	struct shoal_error err = { 0, "" };
	uint64_t pid = 0;
	size_t len;

	snprintf(path, sizeof(path), "%s/redis.pid", dir);
	if (shoal_read_file(path, 64, &text, &len, &err) != SHOAL_OK)
		return;
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		text[--len] = '\0';
	shoal_parse_u64(text, &pid);
	free(text);
	if (pid == 0 || parent_of((long)pid) != 1)
		return;
	while (kill((pid_t)pid, 0) == 0 && shoal_now_ms() < deadline)
		usleep(5000);
}

static int find_in_path(const char *name, char *out, size_t n)
{
	const char *path = getenv("PATH");
	const char *p;

	if (path == NULL)
		path = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
	for (p = path; *p != '\0'; ) {
		const char *end = strchr(p, ':');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if (len > 0 && (size_t)snprintf(out, n, "%.*s/%s", (int)len, p, name) < n &&
		    access(out, X_OK) == 0)
			return 1;
		p += len;
		if (*p == ':')
			p++;
	}
	/* Debian installs it in /usr/bin, but root shells sometimes lack sbin. */
	snprintf(out, n, "/usr/bin/%s", name);
	return access(out, X_OK) == 0;
}

static void exec_redis(const char *bin, const char *dir, const char *sock)
{
	char logfile[600], pidfile[600];
	const char *argv[] = {
		bin, "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
		"--dir", dir, "--appendonly", "yes", "--appendfsync", "everysec",
		"--save", "", "--daemonize", "no", "--logfile", logfile,
		"--pidfile", pidfile, "--protected-mode", "yes", NULL,
	};
	int devnull = open("/dev/null", O_RDWR);

	snprintf(logfile, sizeof(logfile), "%s/redis.log", dir);
	snprintf(pidfile, sizeof(pidfile), "%s/redis.pid", dir);
	if (devnull >= 0) {
		dup2(devnull, 0);
		dup2(devnull, 1);
	}
	/* Stops with the harness: SIGTERM makes redis flush its AOF. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	setpgid(0, 0);
	execv(bin, (char *const *)argv);
	_exit(127);
}

static int wait_ready(struct shoal_embedded_redis *r, struct shoal_error *err)
{
	int64_t deadline = shoal_now_ms() + EMBEDDED_START_MS;
	int status;

	while (shoal_now_ms() < deadline) {
		if (socket_answers(r->socket_path))
			return SHOAL_OK;
		if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
			r->pid = 0;
			return shoal_error_set(err, SHOAL_ESTATE,
					       "embedded redis-server exited at start (status %d); "
					       "see its log next to %s", status, r->socket_path);
		}
		usleep(2000);
	}
	shoal_embedded_stop(r);
	return shoal_error_set(err, SHOAL_ETIMEDOUT,
			       "embedded redis-server did not open %s within %d ms",
			       r->socket_path, EMBEDDED_START_MS);
}

int shoal_embedded_start(const char *state_dir, struct shoal_embedded_redis *r,
			 struct shoal_error *err)
{
	char dir[512], bin[512];
	char *abs;
	int rc;

	memset(r, 0, sizeof(*r));
	/* redis-server changes into --dir: every path it gets is absolute. */
	rc = shoal_mkdir_p(state_dir, 0700, err);
	if (rc != SHOAL_OK)
		return rc;
	abs = realpath(state_dir, NULL);
	if (abs == NULL)
		return shoal_error_errno(err, SHOAL_EIO, "state dir %s", state_dir);
	rc = snprintf(dir, sizeof(dir), "%s/redis", abs) >= (int)sizeof(dir);
	free(abs);
	if (rc ||
	    (size_t)snprintf(r->socket_path, sizeof(r->socket_path), "%s/redis.sock",
			     dir) >= 100)
		return shoal_error_set(err, SHOAL_EINVAL,
				       "state dir path '%s' is too long for a unix socket; "
				       "use a shorter --state-dir", state_dir);
	snprintf(r->url, sizeof(r->url), "unix://%s", r->socket_path);
	rc = shoal_mkdir_p(dir, 0700, err);
	if (rc != SHOAL_OK)
		return rc;
	wait_for_orphan(dir);
	if (socket_answers(r->socket_path))
		return SHOAL_OK;
	if (!find_in_path("redis-server", bin, sizeof(bin)))
		return shoal_error_set(err, SHOAL_ENOTFOUND,
				       "redis-server not found in PATH: install it "
				       "(apt-get install redis-server) or set state.redis "
				       "to the URL of a running Redis");
	unlink(r->socket_path);
	r->pid = fork();
	if (r->pid < 0)
		return shoal_error_errno(err, SHOAL_ESYS, "fork");
	if (r->pid == 0)
		exec_redis(bin, dir, r->socket_path);
	return wait_ready(r, err);
}

void shoal_embedded_stop(struct shoal_embedded_redis *r)
{
	int64_t deadline;
	int status;

	if (r->pid <= 0)
		return;
	kill(r->pid, SIGTERM);
	deadline = shoal_now_ms() + 10000;
	while (waitpid(r->pid, &status, WNOHANG) == 0) {
		if (shoal_now_ms() > deadline) {
			kill(r->pid, SIGKILL);
			waitpid(r->pid, &status, 0);
			break;
		}
		usleep(2000);
	}
	r->pid = 0;
}

int shoal_embedded_ensure(const char *state_dir, struct shoal_embedded_redis *r,
			  struct shoal_error *err)
{
	int status;

	if (r->pid > 0 && waitpid(r->pid, &status, WNOHANG) == r->pid)
		r->pid = 0;
	if (socket_answers(r->socket_path))
		return SHOAL_OK;
	if (r->pid > 0)
		return shoal_error_set(err, SHOAL_ESTATE, "embedded redis-server (pid %ld) "
				       "is not answering", (long)r->pid);
	return shoal_embedded_start(state_dir, r, err);
}
