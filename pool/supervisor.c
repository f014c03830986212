/* supervisor.c - start, reap and stop local `shoal worker` processes. */
#include "pool/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"


void shoal_supervisor_init(struct shoal_supervisor *s, const char *exe,
			   const char *url, uint32_t slots)
{
	memset(s, 0, sizeof(*s));
	shoal_strlcpy(s->exe, exe, sizeof(s->exe));
	shoal_strlcpy(s->url, url, sizeof(s->url));
	s->slots = slots;
}

/* In the child: a clean environment, death with the parent, exec. */
static void exec_worker(const struct shoal_supervisor *s)
{
	char slots[16];
	const char *argv[] = { s->exe, "worker", "--connect", s->url, "--slots",
			       slots, NULL, NULL, NULL };
	const char *envp[] = { "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8",
			       NULL, NULL };
	const char *asan = getenv("ASAN_OPTIONS");
	static char asan_env[512];
	int devnull = open("/dev/null", O_RDONLY);

	/* Sanitizer settings are not secrets and keep test builds usable. */
	if (asan != NULL) {
		snprintf(asan_env, sizeof(asan_env), "ASAN_OPTIONS=%s", asan);
		envp[2] = asan_env;
	}
	if (devnull >= 0)
		dup2(devnull, 0);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		_exit(0);
	snprintf(slots, sizeof(slots), "%u", s->slots);
	if (s->token_file[0] != '\0') {
		argv[6] = "--token-file";
		argv[7] = s->token_file;
	}
	execve(s->exe, (char *const *)argv, (char *const *)envp);
	_exit(127);
}

static int start_one(struct shoal_supervisor *s, struct shoal_error *err)
{
	pid_t pid = fork();

	if (pid < 0)
		return shoal_error_errno(err, SHOAL_ESYS, "cannot start a worker");
	if (pid == 0)
		exec_worker(s);
	s->pids[s->nworkers++] = pid;
	return SHOAL_OK;
}

int shoal_supervisor_scale(struct shoal_supervisor *s, uint32_t n,
			   struct shoal_error *err)
{
	int rc = SHOAL_OK;

	if (n > SHOAL_SUPERVISOR_MAX)
		n = SHOAL_SUPERVISOR_MAX;
	while (s->nworkers < n && rc == SHOAL_OK)
		rc = start_one(s, err);
	return rc;
}

static void forget(struct shoal_supervisor *s, uint32_t i)
{
	s->pids[i] = s->pids[--s->nworkers];
}

void shoal_supervisor_set_token_file(struct shoal_supervisor *s, const char *path)
{
	shoal_strlcpy(s->token_file, path, sizeof(s->token_file));
}

uint32_t shoal_supervisor_reap(struct shoal_supervisor *s, int expected)
{
	uint32_t i = 0, unexpected = 0;
	int status;

	while (i < s->nworkers) {
		pid_t r = waitpid(s->pids[i], &status, WNOHANG);

		if (r != s->pids[i]) {
			i++;
			continue;
		}
		/* A drained worker says BYE and exits 0: only other exits
		 * count against the crash back-off. */
		if (!expected && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
			unexpected++;
			s->restarts++;
			shoal_warn("worker %ld exited (%s %d)", (long)s->pids[i],
				   WIFSIGNALED(status) ? "signal" : "status",
				   WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
		}
		forget(s, i);
	}
	return unexpected;
}

void shoal_supervisor_kill(struct shoal_supervisor *s, pid_t pid)
{
	uint32_t i;

	for (i = 0; i < s->nworkers; i++)
		if (s->pids[i] == pid && pid > 0)
			kill(pid, SIGKILL);
}

void shoal_supervisor_stop(struct shoal_supervisor *s, int64_t grace_ms)
{
	int64_t deadline = shoal_now_ms() + grace_ms;
	uint32_t i;

	for (i = 0; i < s->nworkers; i++)
		kill(s->pids[i], SIGTERM);
	while (s->nworkers > 0 && shoal_now_ms() < deadline) {
		shoal_supervisor_reap(s, 1);
		if (s->nworkers > 0)
			usleep(2000);
	}
	for (i = 0; i < s->nworkers; i++)
		kill(s->pids[i], SIGKILL);
	for (i = 0; i < s->nworkers; i++)
		waitpid(s->pids[i], NULL, 0);
	s->nworkers = 0;
}
