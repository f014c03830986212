/* sandbox_cgroup.c - per-job memory and pids cgroups, where the host lets
 * the worker create them.
 *
 * Each limited job gets a cgroup "shoal-<worker pid>-<seq>" under the
 * worker's own cgroup in each hierarchy that holds the memory or pids
 * controller: one folder on cgroup v2, up to two on v1.  The worker
 * creates it and writes the limits before clone; the init moves itself in
 * (through a cgroup.procs descriptor the worker opened) before it runs
 * anything else, so that the worker never waits for the migration's RCU
 * grace period; the worker reads the OOM / pids events after the job and
 * removes it.  When the worker may not create cgroups (an
 * unprivileged worker without delegation), jobs fall back to rlimits
 * (RLIMIT_AS, RLIMIT_NPROC); global_init says so once in the log. */
#include "pool/sandbox_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

/* A hierarchy where the job cgroups are created. */
struct hier {
	char *dir;		/* the worker's cgroup in it */
	int fd;			/* open dir */
	int v2;
	int memory, pids;	/* controllers it carries */
};

static struct hier hiers[2];
static int nhiers;
static int probed;
static unsigned long long job_seq;	/* atomic: jobs of any thread */

/* Is word one of the comma-separated tokens of list? */
static int has_token(const char *list, const char *word)
{
	size_t n = strlen(word);
	const char *p = list;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, word, n) == 0 && (p[n] == ',' || p[n] == '\0' ||
						  p[n] == ' ' || p[n] == '\n'))
			return 1;
		p = strpbrk(p, ", ");
		if (p != NULL)
			p++;
	}
	return 0;
}

/* The worker's path in the v1 hierarchy carrying ctl ("" = v2). */
static int self_cgroup_path(const char *ctl, char *out, size_t n)
{
	char *data = NULL, *line, *save = NULL;
	size_t len;
	int found = 0;

	if (sb_read_proc("/proc/self/cgroup", 1 << 16, &data, &len))
		return 0;
	for (line = strtok_r(data, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char *c1 = strchr(line, ':');
		char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;

		if (c2 == NULL)
			continue;
		*c2 = '\0';
		if ((ctl[0] == '\0' && c1[1] == '\0' && strncmp(line, "0:", 2) == 0) ||
		    (ctl[0] != '\0' && has_token(c1 + 1, ctl))) {
			shoal_strlcpy(out, c2 + 1, n);
			found = 1;
			break;
		}
	}
	free(data);
	return found;
}

/* Finds the mount of a hierarchy: cgroup2 (ctl "") or the v1 cgroup
 * carrying ctl.  Returns mount point and the mount's root. */
static int find_mount(const char *ctl, char *mnt, size_t mn, char *root,
		      size_t rn)
{
	char *data = NULL, *line, *save = NULL;
	size_t len;
	int found = 0;

	if (sb_read_proc("/proc/self/mountinfo", 1 << 20, &data, &len))
		return 0;
	for (line = strtok_r(data, "\n", &save); line != NULL && !found;
	     line = strtok_r(NULL, "\n", &save)) {
		char *f[6], *dash = strstr(line, " - ");
		char *fs, *opts, *save2 = NULL;
		int i;

		if (dash == NULL)
			continue;
		*dash = '\0';
		fs = strtok_r(dash + 3, " ", &save2);
		(void)strtok_r(NULL, " ", &save2);	/* source */
		opts = strtok_r(NULL, " ", &save2);
		f[0] = strtok_r(line, " ", &save2);
		for (i = 1; i < 6 && f[i - 1] != NULL; i++)
			f[i] = strtok_r(NULL, " ", &save2);
		if (fs == NULL || f[4] == NULL)
			continue;
		if (ctl[0] == '\0' ? strcmp(fs, "cgroup2") != 0
				   : strcmp(fs, "cgroup") != 0 || opts == NULL ||
				     !has_token(opts, ctl))
			continue;
		shoal_strlcpy(root, f[3], rn);
		shoal_strlcpy(mnt, f[4], mn);
		found = 1;
	}
	free(data);
	return found;
}

/* The worker's own cgroup folder in a hierarchy, or 0. */
static int locate(const char *ctl, char *dir, size_t n)
{
	char mnt[512], root[512], self[1024];
	const char *rel;
	size_t rl;

	if (!find_mount(ctl, mnt, sizeof(mnt), root, sizeof(root)) ||
	    !self_cgroup_path(ctl, self, sizeof(self)))
		return 0;
	rel = self;
	rl = strlen(root);
	if (strcmp(root, "/") != 0) {
		if (strncmp(self, root, rl) != 0)
			return 0;	/* our cgroup is outside the mount */
		rel = self + rl;
	}
	snprintf(dir, n, "%s%s", mnt, strcmp(rel, "/") == 0 ? "" : rel);
	return 1;
}

static int write_at(int dirfd, const char *file, const char *text)
{
	size_t len = strlen(text);
	int fd = openat(dirfd, file, O_WRONLY | O_CLOEXEC);
	ssize_t w;

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

/* Reads "key N" from a flat-keyed cgroup file; 0 when absent. */
static unsigned long long read_key(int dirfd, const char *file, const char *key)
{
	char buf[1024], *p;
	size_t kl = strlen(key);
	ssize_t n;
	int fd = openat(dirfd, file, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	for (p = buf; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p)
		if (strncmp(p, key, kl) == 0 && p[kl] == ' ')
			return strtoull(p + kl + 1, NULL, 10);
	return 0;
}

/* Removes job cgroups left by workers that died (name shoal-PID-N). */
static void sweep_stale(const struct hier *h)
{
	int fd = dup(h->fd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;

	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((e = readdir(d)) != NULL) {
		long pid;
		char *end;

		if (strncmp(e->d_name, "shoal-", 6) != 0)
			continue;
		pid = strtol(e->d_name + 6, &end, 10);
		if (*end != '-' || pid <= 0 || pid == (long)getpid() ||
		    kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		(void)unlinkat(h->fd, e->d_name, AT_REMOVEDIR);
	}
	closedir(d);
}

/* Can we make a child cgroup here (and, on v2, enable the controllers
 * for it)?  Leaves nothing behind. */
static int try_hier(struct hier *h, char *why, size_t wn)
{
	char name[64];

	h->fd = open(h->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (h->fd < 0) {
		snprintf(why, wn, "cannot open %s: %s", h->dir, strerror(errno));
		return 0;
	}
	if (h->v2) {
		char want[32];

		snprintf(want, sizeof(want), "%s%s", h->memory ? "+memory " : "",
			 h->pids ? "+pids" : "");
		if (write_at(h->fd, "cgroup.subtree_control", want) != 0) {
			snprintf(why, wn, "cannot enable %s in %s/cgroup.subtree_control: %s",
				 want, h->dir, strerror(errno));
			goto fail;
		}
	}
	snprintf(name, sizeof(name), "shoal-%ld-probe", (long)getpid());
	if (mkdirat(h->fd, name, 0755) != 0 && errno != EEXIST) {
		snprintf(why, wn, "cannot create a cgroup in %s: %s", h->dir,
			 strerror(errno));
		goto fail;
	}
	(void)unlinkat(h->fd, name, AT_REMOVEDIR);
	sweep_stale(h);
	return 1;
fail:
	close(h->fd);
	h->fd = -1;
	return 0;
}

/* cgroup v2 with both controllers available to our cgroup? */
static int probe_v2(char *why, size_t wn)
{
	char dir[2048], path[2200], *ctls = NULL;
	size_t len;
	struct hier h = { NULL, -1, 1, 0, 0 };

	if (!locate("", dir, sizeof(dir)))
		return 0;
	snprintf(path, sizeof(path), "%s/cgroup.controllers", dir);
	if (sb_read_proc(path, 4096, &ctls, &len) != SHOAL_OK)
		return 0;
	h.memory = has_token(ctls, "memory");
	h.pids = has_token(ctls, "pids");
	free(ctls);
	if (!h.memory && !h.pids)
		return 0;
	h.dir = shoal_strdup(dir);
	if (h.dir == NULL || !try_hier(&h, why, wn)) {
		free(h.dir);
		return 0;
	}
	hiers[nhiers++] = h;
	return 1;
}

static void probe_v1(const char *ctl, char *why, size_t wn)
{
	char dir[2048];
	struct hier h = { NULL, -1, 0, 0, 0 };

	if (!locate(ctl, dir, sizeof(dir)))
		return;
	h.memory = strcmp(ctl, "memory") == 0;
	h.pids = !h.memory;
	h.dir = shoal_strdup(dir);
	if (h.dir == NULL || !try_hier(&h, why, wn)) {
		free(h.dir);
		return;
	}
	hiers[nhiers++] = h;
}

void sb_cgroup_probe(void)
{
	char why[1400] = "no cgroup hierarchy with the memory or pids "
			 "controller is mounted";
	int mem = 0, pids = 0;

	if (probed)
		return;
	probed = 1;
	if (!probe_v2(why, sizeof(why))) {
		probe_v1("memory", why, sizeof(why));
		probe_v1("pids", why, sizeof(why));
	}
	sb_cgroup_available(&mem, &pids);
	if (mem && pids)
		return;
	shoal_warn("sandbox: %s%s%s limits fall back to rlimits (%s): %s",
		   mem ? "" : "memory", !mem && !pids ? " and " : "",
		   pids ? "" : "process",
		   !mem && !pids ? "RLIMIT_AS, RLIMIT_NPROC" :
		   mem ? "RLIMIT_NPROC" : "RLIMIT_AS", why);
}

int sb_cgroup_available(int *memory, int *pids)
{
	int i;

	*memory = *pids = 0;
	for (i = 0; i < nhiers; i++) {
		*memory |= hiers[i].memory;
		*pids |= hiers[i].pids;
	}
	return *memory || *pids;
}

static int setup_limits(const struct hier *h, int fd, uint64_t memory,
			uint32_t pids)
{
	char num[32];

	if (h->memory && memory > 0) {
		snprintf(num, sizeof(num), "%llu", (unsigned long long)memory);
		if (write_at(fd, h->v2 ? "memory.max" : "memory.limit_in_bytes",
			     num) != 0)
			return -1;
		/* no swap beyond the limit; absent without swap accounting */
		(void)write_at(fd, h->v2 ? "memory.swap.max" :
			       "memory.memsw.limit_in_bytes", h->v2 ? "0" : num);
	}
	if (h->pids && pids > 0) {
		/* +1: the sandbox's init is in the cgroup too */
		snprintf(num, sizeof(num), "%lu", (unsigned long)pids + 1);
		if (write_at(fd, "pids.max", num) != 0)
			return -1;
	}
	return 0;
}

void sb_cgroup_create(struct sb_cgroup *cg, uint64_t memory, uint32_t pids)
{
	unsigned long long seq;
	int i;

	memset(cg, 0, sizeof(*cg));
	if (memory == 0 && pids == 0)
		return;
	seq = __atomic_add_fetch(&job_seq, 1, __ATOMIC_RELAXED);
	for (i = 0; i < nhiers; i++) {
		const struct hier *h = &hiers[i];
		int k = cg->ndirs, fd;

		if (!((h->memory && memory > 0) || (h->pids && pids > 0)))
			continue;
		snprintf(cg->names[k], sizeof(cg->names[k]), "shoal-%ld-%llu",
			 (long)getpid(), seq);
		if (mkdirat(h->fd, cg->names[k], 0755) != 0)
			continue;
		fd = openat(h->fd, cg->names[k], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 || setup_limits(h, fd, memory, pids) != 0) {
			shoal_debug("sandbox: cgroup %s/%s: %s", h->dir,
				    cg->names[k], strerror(errno));
			if (fd >= 0)
				close(fd);
			(void)unlinkat(h->fd, cg->names[k], AT_REMOVEDIR);
			continue;
		}
		cg->fds[k] = fd;
		cg->parent[k] = i;
		cg->has_memory |= h->memory && memory > 0;
		cg->has_pids |= h->pids && pids > 0;
		cg->ndirs++;
	}
}

int sb_cgroup_open_procs(const struct sb_cgroup *cg, int fds[2])
{
	int i;

	for (i = 0; i < cg->ndirs; i++) {
		fds[i] = openat(cg->fds[i], "cgroup.procs", O_WRONLY | O_CLOEXEC);
		if (fds[i] < 0) {
			while (i-- > 0)
				close(fds[i]);
			return -1;
		}
	}
	return cg->ndirs;
}

void sb_cgroup_events(const struct sb_cgroup *cg, unsigned long long *oom,
		      unsigned long long *pids_max)
{
	int i;

	*oom = *pids_max = 0;
	for (i = 0; i < cg->ndirs; i++) {
		const struct hier *h = &hiers[cg->parent[i]];

		if (h->memory)
			*oom += read_key(cg->fds[i], h->v2 ? "memory.events" :
					 "memory.oom_control", "oom_kill");
		if (h->pids)
			*pids_max += read_key(cg->fds[i], "pids.events", "max");
	}
}

void sb_cgroup_destroy(struct sb_cgroup *cg)
{
	int i;

	for (i = 0; i < cg->ndirs; i++) {
		const struct hier *h = &hiers[cg->parent[i]];

		close(cg->fds[i]);
		if (unlinkat(h->fd, cg->names[i], AT_REMOVEDIR) != 0)
			shoal_debug("sandbox: removing cgroup %s/%s: %s", h->dir,
				    cg->names[i], strerror(errno));
	}
	cg->ndirs = 0;
}
