/* sandbox_mounts.c - the sandbox's file system.
 *
 * global_init decides once what the host layout holds (sb_mounts_plan):
 * the system folders, an allowlist of /etc entries (copied, linked or
 * bound read-only), a generated passwd/group/hosts naming the sandbox
 * user, and a minimal /dev.  Each job's init then builds it
 * (sb_mounts_build), without allocating:
 *
 *   1. make every mount private; mount a throwaway "base" tmpfs on /tmp
 *      and pivot_root into it: the host is now at /o, the new root is
 *      assembled at /r, the scratch file system at /s;
 *   2. /r is a small tmpfs (host layout) or a bind of the rootfs folder;
 *      create the plan's folders, files and links, bind the system
 *      folders, /etc entries and readonly_paths from /o;
 *   3. make /r and everything bound under it read-only, nosuid, nodev in
 *      one recursive mount_setattr;
 *   4. bind the host's device nodes into /r/dev; mount a fresh /proc;
 *   5. mount the scratch tmpfs (size = disk) at /s and bind its folders
 *      to /r/workspace, /r/tmp and /r/dev/shm: one budget for all three;
 *   6. pivot_root into /r and detach the base, and with it the host (/o).
 *
 * Mounts are only made onto paths created in steps 1-2, inside tmpfs
 * file systems that exist only in this mount namespace. */
#include "pool/sandbox_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/mount.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/util.h"

/* /etc entries a command may need; anything else in the host's /etc
 * (shadow, ssh keys, machine-id, ...) is never visible. */
static const char *const etc_allow[] = {
	"ld.so.conf", "ld.so.conf.d", "alternatives", "ssl/certs",
	"ssl/openssl.cnf", "pki/tls/certs", "pki/ca-trust/extracted",
	"localtime", "timezone", "nsswitch.conf", "protocols", "services",
	"os-release",
};

/* Always bound, never copied: it changes when packages are installed. */
static const char *const etc_bind_always[] = { "ld.so.cache" };

/* Host folders of the usrmerge layout: a symlink is recreated, a real
 * folder is bound read-only. */
static const char *const system_dirs[] = {
	"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
};

static const char *const dev_nodes[] = {
	"null", "zero", "full", "random", "urandom", "tty",
};

static const char etc_passwd[] =
	"sandbox:x:1000:1000:sandbox:/workspace:/bin/sh\n"
	"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
static const char etc_group[] =
	"sandbox:x:1000:\n"
	"nogroup:x:65534:\n";
static const char etc_hosts[] =
	"127.0.0.1\tlocalhost\n"
	"::1\tlocalhost ip6-localhost ip6-loopback\n"
	"127.0.1.1\tsandbox\n";

#define COPY_MAX (64 * 1024)	/* larger /etc files are bound instead */
#define PLAN_MAX 96

/* The plans: root (host layout only) and dev (both layouts). */
static struct sb_op root_plan[PLAN_MAX];
static size_t root_len;
static struct sb_op dev_plan[16];
static size_t dev_len;
static struct sb_op resolv_op;	/* bound only with network: host */
static int resolv_ok;
static int planned;

static int plan_add(struct sb_op *plan, size_t *len, size_t max,
		    const struct sb_op *op)
{
	if (*len >= max)
		return SHOAL_ETOOBIG;
	plan[(*len)++] = *op;
	return SHOAL_OK;
}

static int root_add(int kind, const char *path, const char *src,
		    const char *data, size_t len, int is_dir)
{
	struct sb_op op = { kind, path, src, data, len, is_dir };

	return plan_add(root_plan, &root_len, PLAN_MAX, &op);
}

/* Interned copies of the strings the plans point to; they live as long
 * as the process (global_init runs once). */
static char *keep(const char *s)
{
	return shoal_strdup(s);
}

static int plan_system_dirs(void)
{
	size_t i;

	for (i = 0; i < SHOAL_ARRAY_LEN(system_dirs); i++) {
		const char *p = system_dirs[i];
		char target[PATH_MAX];
		struct stat st;
		ssize_t n;

		if (lstat(p, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			if (root_add(SB_OP_BIND, p, p, NULL, 0, 1) != SHOAL_OK)
				return SHOAL_ETOOBIG;
			continue;
		}
		if (!S_ISLNK(st.st_mode))
			continue;
		n = readlink(p, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		if (root_add(SB_OP_LINK, p, NULL, keep(target), (size_t)n, 0) !=
		    SHOAL_OK)
			return SHOAL_ETOOBIG;
	}
	return SHOAL_OK;
}

/* Adds MKDIR ops for each missing parent of an /etc entry ("ssl/certs"
 * needs /etc/ssl).  Parents are found among the ops already planned. */
static int plan_parents(const char *path)
{
	char buf[PATH_MAX];
	char *slash;
	size_t i;

	shoal_strlcpy(buf, path, sizeof(buf));
	for (slash = strchr(buf + 1, '/'); slash != NULL;
	     slash = strchr(slash + 1, '/')) {
		int have = 0;

		*slash = '\0';
		for (i = 0; i < root_len; i++)
			if (strcmp(root_plan[i].path, buf) == 0)
				have = 1;
		if (!have && root_add(SB_OP_MKDIR, keep(buf), NULL, NULL, 0, 0))
			return SHOAL_ETOOBIG;
		*slash = '/';
	}
	return SHOAL_OK;
}

/* One /etc entry: link, copy or bind, decided by what the host has. */
static int plan_etc_entry(const char *name, int force_bind)
{
	char path[PATH_MAX];
	struct stat st;
	char *copy = NULL;
	size_t len = 0;

	snprintf(path, sizeof(path), "/etc/%s", name);
	if (lstat(path, &st) != 0)
		return SHOAL_OK;
	if (plan_parents(path) != SHOAL_OK)
		return SHOAL_ETOOBIG;
	if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlink(path, target, sizeof(target) - 1);

		if (n <= 0)
			return SHOAL_OK;
		target[n] = '\0';
		return root_add(SB_OP_LINK, keep(path), NULL, keep(target),
				(size_t)n, 0);
	}
	if (S_ISDIR(st.st_mode))
		return root_add(SB_OP_BIND, keep(path), keep(path), NULL, 0, 1);
	if (!S_ISREG(st.st_mode))
		return SHOAL_OK;
	if (force_bind || st.st_size > COPY_MAX ||
	    shoal_read_file(path, COPY_MAX, &copy, &len, NULL) != SHOAL_OK)
		return root_add(SB_OP_BIND, keep(path), keep(path), NULL, 0, 0);
	return root_add(SB_OP_FILE, keep(path), NULL, copy, len, 0);
}

static int plan_etc(void)
{
	size_t i;
	int rc = root_add(SB_OP_MKDIR, "/etc", NULL, NULL, 0, 0);

	rc = rc ? rc : root_add(SB_OP_FILE, "/etc/passwd", NULL, etc_passwd,
				sizeof(etc_passwd) - 1, 0);
	rc = rc ? rc : root_add(SB_OP_FILE, "/etc/group", NULL, etc_group,
				sizeof(etc_group) - 1, 0);
	rc = rc ? rc : root_add(SB_OP_FILE, "/etc/hosts", NULL, etc_hosts,
				sizeof(etc_hosts) - 1, 0);
	for (i = 0; rc == SHOAL_OK && i < SHOAL_ARRAY_LEN(etc_bind_always); i++)
		rc = plan_etc_entry(etc_bind_always[i], 1);
	for (i = 0; rc == SHOAL_OK && i < SHOAL_ARRAY_LEN(etc_allow); i++)
		rc = plan_etc_entry(etc_allow[i], 0);
	return rc;
}

/* /etc/resolv.conf, for network: host only.  It is often a symlink into
 * /run, which the sandbox never sees: bind the file it resolves to. */
static void plan_resolv(void)
{
	char real[PATH_MAX];
	struct stat st;

	if (realpath("/etc/resolv.conf", real) == NULL || stat(real, &st) != 0 ||
	    !S_ISREG(st.st_mode))
		return;
	resolv_op.kind = SB_OP_BIND;
	resolv_op.path = "/etc/resolv.conf";
	resolv_op.src = keep(real);
	resolv_ok = resolv_op.src != NULL;
}

static int plan_dev(void)
{
	static const struct sb_op fixed[] = {
		{ SB_OP_LINK, "/dev/fd", NULL, "/proc/self/fd", 0, 0 },
		{ SB_OP_LINK, "/dev/stdin", NULL, "/proc/self/fd/0", 0, 0 },
		{ SB_OP_LINK, "/dev/stdout", NULL, "/proc/self/fd/1", 0, 0 },
		{ SB_OP_LINK, "/dev/stderr", NULL, "/proc/self/fd/2", 0, 0 },
		{ SB_OP_MKDIR, "/dev/shm", NULL, NULL, 0, 0 },
	};
	size_t i;

	for (i = 0; i < SHOAL_ARRAY_LEN(dev_nodes); i++) {
		char path[64];
		struct stat st;
		struct sb_op op = { SB_OP_DEV, NULL, NULL, NULL, 0, 0 };

		snprintf(path, sizeof(path), "/dev/%s", dev_nodes[i]);
		if (stat(path, &st) != 0 || !S_ISCHR(st.st_mode))
			continue;
		op.path = keep(path);
		op.src = op.path;
		if (plan_add(dev_plan, &dev_len, SHOAL_ARRAY_LEN(dev_plan), &op))
			return SHOAL_ETOOBIG;
	}
	for (i = 0; i < SHOAL_ARRAY_LEN(fixed); i++)
		if (plan_add(dev_plan, &dev_len, SHOAL_ARRAY_LEN(dev_plan),
			     &fixed[i]) != SHOAL_OK)
			return SHOAL_ETOOBIG;
	return SHOAL_OK;
}

int sb_mounts_plan(struct shoal_error *err)
{
	struct stat st;
	int rc;

	if (planned)
		return SHOAL_OK;
	if (stat("/usr", &st) != 0 || !S_ISDIR(st.st_mode))
		return shoal_error_set(err, SHOAL_EUNSUPPORTED,
				       "the host has no /usr folder to bind "
				       "into sandboxes (rootfs: host)");
	rc = plan_system_dirs();
	rc = rc ? rc : plan_etc();
	rc = rc ? rc : root_add(SB_OP_MKDIR, "/dev", NULL, NULL, 0, 0);
	rc = rc ? rc : root_add(SB_OP_MKDIR, "/proc", NULL, NULL, 0, 0);
	rc = rc ? rc : root_add(SB_OP_MKDIR, "/tmp", NULL, NULL, 0, 0);
	rc = rc ? rc : root_add(SB_OP_MKDIR, "/workspace", NULL, NULL, 0, 0);
	rc = rc ? rc : plan_dev();
	if (rc != SHOAL_OK)
		return shoal_error_set(err, SHOAL_ENOMEM,
				       "planning the sandbox file system failed");
	plan_resolv();
	planned = 1;
	return SHOAL_OK;
}

/* ---- child side: no allocation below this line ---- */

/* dst = a + b, always terminated; -ENAMETOOLONG when it does not fit. */
static int cat2(char *dst, size_t n, const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (la + lb + 1 > n)
		return -ENAMETOOLONG;
	memcpy(dst, a, la);
	memcpy(dst + la, b, lb + 1);
	return 0;
}

/* Records what failed ("bind /usr") for the report. */
static int fail(char *what, size_t n, const char *verb, const char *path)
{
	int e = errno ? errno : EIO;

	snprintf(what, n, "%s %s", verb, path);
	return -e;
}

static int make_file(const char *path, const void *data, size_t len,
		     mode_t mode)
{
	const char *p = data;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		      mode);

	if (fd < 0)
		return -1;
	while (len > 0) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = w < 0 ? errno : ENOSPC;

			close(fd);
			errno = e;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return close(fd);
}

/* Creates the target of an op under root (folders, files, links, empty
 * mount points for binds). */
static int shape_op(const char *root, const struct sb_op *op, char *what,
		    size_t wn)
{
	char path[PATH_MAX];
	int rc = 0;

	if (cat2(path, sizeof(path), root, op->path) != 0) {
		errno = ENAMETOOLONG;
		return fail(what, wn, "create", op->path);
	}
	switch (op->kind) {
	case SB_OP_MKDIR:
		rc = mkdir(path, 0755);
		break;
	case SB_OP_FILE:
		rc = make_file(path, op->data, op->len, 0444);
		break;
	case SB_OP_LINK:
		rc = symlink(op->data, path);
		break;
	case SB_OP_BIND:
	case SB_OP_DEV:
		rc = op->is_dir ? mkdir(path, 0755) : make_file(path, "", 0, 0444);
		break;
	default:
		break;
	}
	if (rc != 0 && errno != EEXIST)
		return fail(what, wn, "create", op->path);
	return 0;
}

/* Binds host path (seen under /o) onto root+dst. */
static int bind_host(const char *root, const char *src, const char *dst,
		     char *what, size_t wn)
{
	char from[PATH_MAX], to[PATH_MAX];

	errno = ENAMETOOLONG;
	if (cat2(from, sizeof(from), "/o", src) != 0 ||
	    cat2(to, sizeof(to), root, dst) != 0)
		return fail(what, wn, "bind", dst);
	if (mount(from, to, NULL, MS_BIND | MS_REC, NULL) != 0)
		return fail(what, wn, "bind", dst);
	return 0;
}

static int run_plan(const char *root, const struct sb_op *plan, size_t n,
		    int kind, char *what, size_t wn)
{
	size_t i;
	int rc;

	for (i = 0; i < n; i++) {
		if (kind == 0)
			rc = shape_op(root, &plan[i], what, wn);
		else if (plan[i].kind == kind)
			rc = bind_host(root, plan[i].src, plan[i].path, what, wn);
		else
			rc = 0;
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* mkdir -p of path's parents (not path itself) under root. */
static int make_parents(const char *full)
{
	char buf[PATH_MAX];
	char *s;

	if (strlen(full) >= sizeof(buf))
		return -1;
	memcpy(buf, full, strlen(full) + 1);
	for (s = strchr(buf + 1, '/'); s != NULL; s = strchr(s + 1, '/')) {
		*s = '\0';
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return -1;
		*s = '/';
	}
	return 0;
}

/* readonly_paths: created as needed inside, then bound from the host. */
static int bind_readonly_paths(const struct sb_launch *l, const char *root,
			       char *what, size_t wn)
{
	size_t i;

	for (i = 0; i < l->nbinds; i++) {
		const struct sb_bind *b = &l->binds[i];
		char to[PATH_MAX];
		struct stat st;
		int rc;

		errno = ENAMETOOLONG;
		if (cat2(to, sizeof(to), root, b->dst) != 0)
			return fail(what, wn, "bind", b->dst);
		if (lstat(to, &st) != 0) {
			if (make_parents(to) != 0)
				return fail(what, wn, "create", b->dst);
			rc = b->is_dir ? mkdir(to, 0755) : make_file(to, "", 0, 0444);
			if (rc != 0)
				return fail(what, wn, "create", b->dst);
		}
		rc = bind_host(root, b->src, b->dst, what, wn);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* Read-only, nosuid, nodev for path and (recursive) everything under it.
 * Kernels before 5.12 lack mount_setattr: remount the top mount only,
 * keeping the flags a user namespace may not clear. */
static int make_readonly(const char *path, int recursive)
{
	struct mount_attr attr;
	struct statvfs sv;
	unsigned long flags;

	memset(&attr, 0, sizeof(attr));
	attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
	if (syscall(SYS_mount_setattr, AT_FDCWD, path,
		    recursive ? AT_RECURSIVE : 0, &attr, sizeof(attr)) == 0)
		return 0;
	if (errno != ENOSYS)
		return -1;
	if (statvfs(path, &sv) != 0)
		return -1;
	flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV;
	flags |= sv.f_flag & (ST_NOEXEC | ST_NOATIME | ST_NODIRATIME | ST_RELATIME);
	return mount(NULL, path, NULL, flags, NULL);
}

/* Steps 1: private mounts, base tmpfs, first pivot. */
static int enter_base(char *what, size_t wn)
{
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		return fail(what, wn, "make private", "/");
	if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
		  "mode=0700,size=64k,nr_inodes=64") != 0)
		return fail(what, wn, "mount base tmpfs on", "/tmp");
	if (mkdir("/tmp/o", 0700) != 0 || mkdir("/tmp/r", 0755) != 0 ||
	    mkdir("/tmp/s", 0700) != 0)
		return fail(what, wn, "create", "base folders");
	if (syscall(SYS_pivot_root, "/tmp", "/tmp/o") != 0)
		return fail(what, wn, "pivot_root", "/tmp");
	if (chdir("/") != 0)
		return fail(what, wn, "chdir", "/");
	return 0;
}

/* Step 2 for the host layout: a tmpfs root with the plan. */
static int build_host_root(const struct sb_launch *l, char *what, size_t wn)
{
	int rc;

	if (mount("tmpfs", "/r", "tmpfs", MS_NOSUID | MS_NODEV,
		  "mode=0755,size=1m,nr_inodes=1024") != 0)
		return fail(what, wn, "mount root tmpfs on", "/r");
	rc = run_plan("/r", root_plan, root_len, 0, what, wn);
	if (rc == 0)
		rc = run_plan("/r", dev_plan, dev_len, 0, what, wn);
	if (rc == 0 && l->network_host && resolv_ok)
		rc = shape_op("/r", &resolv_op, what, wn);
	if (rc == 0)
		rc = run_plan("/r", root_plan, root_len, SB_OP_BIND, what, wn);
	if (rc == 0 && l->network_host && resolv_ok)
		rc = bind_host("/r", resolv_op.src, resolv_op.path, what, wn);
	return rc;
}

/* Step 2 for a rootfs folder: bound as the root; it must already have the
 * mount points. */
static int build_dir_root(const struct sb_launch *l, char *what, size_t wn)
{
	static const char *const need[] = { "/proc", "/dev", "/tmp", "/workspace" };
	char path[PATH_MAX];
	struct stat st;
	size_t i;
	int rc;

	rc = bind_host("/r", l->rootfs_dir, "", what, wn);
	if (rc != 0)
		return rc;
	/* read-only at once: nothing below may write into the host folder */
	if (make_readonly("/r", 1) != 0)
		return fail(what, wn, "make read-only", l->rootfs_dir);
	for (i = 0; i < SHOAL_ARRAY_LEN(need); i++) {
		snprintf(path, sizeof(path), "/r%s", need[i]);
		if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
			if (errno == 0)
				errno = ENOTDIR;
			return fail(what, wn, "rootfs lacks the folder", need[i]);
		}
	}
	return 0;
}

/* Step 4 for a rootfs folder: its /dev is a small tmpfs of our own. */
static int build_dir_dev(char *what, size_t wn)
{
	int rc;

	if (mount("tmpfs", "/r/dev", "tmpfs", MS_NOSUID | MS_NOEXEC,
		  "mode=0755,size=64k,nr_inodes=64") != 0)
		return fail(what, wn, "mount tmpfs on", "/dev");
	rc = run_plan("/r", dev_plan, dev_len, 0, what, wn);
	if (rc == 0 && make_readonly("/r/dev", 0) != 0)
		rc = fail(what, wn, "make read-only", "/dev");
	return rc;
}

/* Step 5: the scratch file system and its three views. */
static int build_scratch(const struct sb_launch *l, char *what, size_t wn)
{
	static const struct { const char *dir; mode_t mode; const char *to; }
	views[] = {
		{ "/s/w", 0755, "/r/workspace" },
		{ "/s/t", 01777, "/r/tmp" },
		{ "/s/m", 01777, "/r/dev/shm" },
	};
	size_t i;

	if (mount("tmpfs", "/s", "tmpfs", MS_NOSUID | MS_NODEV,
		  l->scratch_opts) != 0)
		return fail(what, wn, "mount scratch tmpfs", l->scratch_opts);
	for (i = 0; i < SHOAL_ARRAY_LEN(views); i++) {
		if (mkdir(views[i].dir, views[i].mode) != 0 ||
		    chmod(views[i].dir, views[i].mode) != 0)
			return fail(what, wn, "create", views[i].dir);
		if (mount(views[i].dir, views[i].to, NULL, MS_BIND, NULL) != 0)
			return fail(what, wn, "bind", views[i].to + 2);
	}
	return 0;
}

/* Step 6: leave the host and the base behind.  pivot_root(".", ".")
 * stacks the base over the new root; one lazy unmount detaches the base
 * with everything mounted in it (the host at /o, the scratch at /s): one
 * RCU grace period instead of two. */
static int enter_root(char *what, size_t wn)
{
	if (chdir("/r") != 0)
		return fail(what, wn, "chdir", "/r");
	if (syscall(SYS_pivot_root, ".", ".") != 0)
		return fail(what, wn, "pivot_root", "/r");
	if (umount2(".", MNT_DETACH) != 0)
		return fail(what, wn, "detach", "the host and the base tmpfs");
	if (chdir("/") != 0)
		return fail(what, wn, "chdir", "/");
	return 0;
}

int sb_mounts_build(const struct sb_launch *l, char *what, size_t wn)
{
	int rc;

	errno = 0;
	rc = enter_base(what, wn);
	if (rc == 0)
		rc = l->rootfs_dir == NULL ? build_host_root(l, what, wn)
					   : build_dir_root(l, what, wn);
	if (rc == 0)
		rc = bind_readonly_paths(l, "/r", what, wn);
	if (rc == 0 && make_readonly("/r", 1) != 0)
		rc = fail(what, wn, "make read-only", "/");
	if (rc == 0 && l->rootfs_dir != NULL)
		rc = build_dir_dev(what, wn);
	if (rc == 0)
		rc = run_plan("/r", dev_plan, dev_len, SB_OP_DEV, what, wn);
	if (rc == 0 && mount("proc", "/r/proc", "proc",
			     MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
		rc = fail(what, wn, "mount", "/proc");
	if (rc == 0)
		rc = build_scratch(l, what, wn);
	if (rc == 0)
		rc = enter_root(what, wn);
	return rc;
}

int sb_mounts_make_readonly(const char *path)
{
	if (mount(path, path, NULL, MS_BIND, NULL) != 0)
		return -errno;
	if (make_readonly(path, 0) != 0)
		return -errno;
	return 0;
}
