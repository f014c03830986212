/* sandbox_files.c - the init's work on files: collecting the `outputs`
 * folders after a job, and a session's write, read, list and remove
 * operations.
 * Runs in the init only: no allocation, static buffers (the init is
 * single-threaded).
 *
 * Every path comes from the worker and names something under the
 * workspace, which the workload controls: paths are relative with no ".."
 * (checked by the worker and again here), and are opened one component at
 * a time with O_NOFOLLOW, so a planted symlink anywhere on the way stops
 * the walk (ELOOP / ENOTDIR) instead of leading out.  Only regular files
 * are read; FIFOs, sockets and devices are never opened for I/O. */
#include "pool/sandbox_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/util.h"

static char file_buf[SB_PAYLOAD_MAX];
#define WALK_DEPTH 16
static char dents_buf[WALK_DEPTH][4096];

/* ---- collecting outputs ---- */

struct collect {
	const struct sb_launch *l;
	int sock;
	char path[PATH_MAX];	/* relative to the workspace */
	uint32_t files;
	uint64_t bytes;
	int over;
};

static void send_over(struct collect *c)
{
	char buf[12];
	uint64_t b = c->bytes;

	if (c->over)
		return;
	c->over = 1;
	memcpy(buf, &c->files, 4);
	memcpy(buf + 4, &b, 8);
	sb_send_frame(c->sock, SB_F_OVER, 0, buf, sizeof(buf));
}

/* Sends one regular file (opened without following symlinks). */
static void collect_file(struct collect *c, int dirfd, const char *name)
{
	struct stat st;
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
			O_NOCTTY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return;
	}
	if (c->files + 1 > c->l->outputs_max_files ||
	    c->bytes + (uint64_t)st.st_size > c->l->outputs_max_bytes) {
		close(fd);
		send_over(c);
		return;
	}
	c->files++;
	sb_send_frame(c->sock, SB_F_FILE, (uint32_t)(st.st_mode & 07777), c->path,
		   strlen(c->path));
	for (;;) {
		ssize_t n = read(fd, file_buf, sizeof(file_buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (c->bytes + (uint64_t)n > c->l->outputs_max_bytes) {
			send_over(c);
			break;
		}
		c->bytes += (uint64_t)n;
		sb_send_frame(c->sock, SB_F_DATA, 0, file_buf, (size_t)n);
	}
	close(fd);
}

struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

static void collect_dir(struct collect *c, int dirfd, int depth);

/* One directory entry: path already holds it; recurse or send. */
static void collect_entry(struct collect *c, int dirfd, const char *name,
			  unsigned char type, int depth)
{
	struct stat st;

	if (type == DT_UNKNOWN) {
		if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			return;
		type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG
									    : DT_LNK;
	}
	if (type == DT_REG) {
		collect_file(c, dirfd, name);
	} else if (type == DT_DIR && depth + 1 < WALK_DEPTH) {
		int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
				O_CLOEXEC);

		if (fd >= 0) {
			collect_dir(c, fd, depth + 1);
			close(fd);
		}
	}
	/* symlinks, fifos, sockets, devices: never followed nor read */
}

static void collect_dir(struct collect *c, int dirfd, int depth)
{
	char *buf = dents_buf[depth];
	size_t base = strlen(c->path);

	for (;;) {
		long n = syscall(SYS_getdents64, dirfd, buf, sizeof(dents_buf[0]));
		long off;

		if (n <= 0)
			return;
		for (off = 0; off < n && !c->over;) {
			struct linux_dirent64 *d = (void *)(buf + off);
			size_t nl = strlen(d->d_name);

			off += d->d_reclen;
			if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
				continue;
			if (base + 1 + nl >= sizeof(c->path))
				continue;
			c->path[base] = '/';
			memcpy(c->path + base + 1, d->d_name, nl + 1);
			collect_entry(c, dirfd, d->d_name, d->d_type, depth);
			c->path[base] = '\0';
		}
		if (c->over)
			return;
	}
}

/* Opens a relative folder path component by component, never following
 * a symlink; returns the last component's parent fd and its name. */
static int open_parent(int ws, const char *rel, char *last, size_t ln)
{
	char buf[PATH_MAX];
	char *s, *p;
	int fd = dup(ws);

	if (fd < 0 || strlen(rel) >= sizeof(buf))
		return -1;
	memcpy(buf, rel, strlen(rel) + 1);
	p = buf;
	while ((s = strchr(p, '/')) != NULL) {
		int next;

		*s = '\0';
		next = openat(fd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(fd);
		if (next < 0)
			return -1;
		fd = next;
		p = s + 1;
	}
	shoal_strlcpy(last, p, ln);
	return fd;
}

void sb_collect_outputs(const struct sb_launch *l, int sock)
{
	const struct shoal_sandbox_spec *s = l->spec;
	struct collect c;
	size_t i;
	int ws;

	if (s->noutputs == 0)
		return;
	ws = open(l->workspace, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ws < 0)
		return;
	memset(&c, 0, sizeof(c));
	c.l = l;
	c.sock = sock;
	for (i = 0; i < s->noutputs && !c.over; i++) {
		char last[NAME_MAX + 1];
		int dir = open_parent(ws, s->outputs[i], last, sizeof(last));

		if (dir < 0)
			continue;
		shoal_strlcpy(c.path, s->outputs[i], sizeof(c.path));
		collect_entry(&c, dir, last, DT_UNKNOWN, 0);
		close(dir);
	}
	close(ws);
}

/* ---- a session's file operations ---- */

static int bad_path(const char *p)
{
	const char *s = p;

	if (*p == '/')
		return 1;
	while (*s != '\0') {
		const char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);

		if (n == 0 || (n == 1 && s[0] == '.') ||
		    (n == 2 && s[0] == '.' && s[1] == '.'))
			return 1;
		s += n + (e != NULL);
	}
	return 0;
}

/* Like open_parent, creating missing folders on the way (mode 0755). */
static int make_parent(int ws, const char *rel, char *last, size_t ln)
{
	char buf[PATH_MAX];
	char *s, *p;
	int fd = dup(ws);

	if (fd < 0 || strlen(rel) >= sizeof(buf))
		return -1;
	memcpy(buf, rel, strlen(rel) + 1);
	p = buf;
	while ((s = strchr(p, '/')) != NULL) {
		int next;

		*s = '\0';
		if (mkdirat(fd, p, 0755) != 0 && errno != EEXIST) {
			close(fd);
			return -1;
		}
		next = openat(fd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(fd);
		if (next < 0)
			return -1;
		fd = next;
		p = s + 1;
	}
	shoal_strlcpy(last, p, ln);
	return fd;
}

static int write_all_fd(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? errno : ENOSPC;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Receives the DATA frames of a WRITE up to its END; writes them to fd
 * (or only drains them when fd < 0).  Returns the first errno. */
static int receive_data(int sock, int fd)
{
	int err = 0;

	for (;;) {
		struct sb_hdr h;
		ssize_t n = recv(sock, file_buf, sizeof(file_buf), 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(0);	/* the worker is gone */
		if ((size_t)n < sizeof(h))
			return EPROTO;
		memcpy(&h, file_buf, sizeof(h));
		if (h.type == SB_C_END)
			return err;
		if (h.type != SB_C_DATA)
			return EPROTO;
		if (fd >= 0 && err == 0)
			err = write_all_fd(fd, file_buf + sizeof(h), (size_t)n - sizeof(h));
	}
}

void sb_session_write(int ws, int sock, const char *path, uint32_t mode)
{
	char last[NAME_MAX + 1];
	int dir = -1, fd = -1, err = 0;

	if (bad_path(path))
		err = EINVAL;
	if (err == 0) {
		dir = make_parent(ws, path, last, sizeof(last));
		if (dir < 0)
			err = errno;
	}
	if (err == 0) {
		fd = openat(dir, last, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW |
			    O_NONBLOCK | O_CLOEXEC, 0600);
		if (fd < 0)
			err = errno;
	}
	if (fd >= 0) {
		struct stat st;

		if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
			err = EINVAL;	/* a FIFO or device planted there */
			close(fd);
			fd = -1;
		}
	}
	{
		int rerr = receive_data(sock, fd);

		if (err == 0)
			err = rerr;
	}
	if (fd >= 0) {
		if (err == 0 && fchmod(fd, (mode_t)(mode & 0777)) != 0)
			err = errno;
		close(fd);
	}
	if (dir >= 0)
		close(dir);
	sb_send_frame(sock, SB_F_OPDONE, (uint32_t)err, NULL, 0);
}

/* Opens path (relative, "" = the workspace) without following links. */
static int open_beneath(int ws, const char *path, int flags)
{
	char last[NAME_MAX + 1];
	int dir, fd;

	/* not dup(ws): a dup shares ws's directory offset, so a second
	 * listing of the workspace would start at its end */
	if (path[0] == '\0')
		return openat(ws, ".", flags | O_NOFOLLOW | O_CLOEXEC);
	if (bad_path(path)) {
		errno = EINVAL;
		return -1;
	}
	dir = open_parent(ws, path, last, sizeof(last));
	if (dir < 0)
		return -1;
	fd = openat(dir, last, flags | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	close(dir);
	return fd;
}

void sb_session_read(int ws, int sock, const char *path, size_t max)
{
	struct stat st;
	size_t sent = 0;
	int fd = open_beneath(ws, path, O_RDONLY), err = 0;

	if (fd < 0)
		err = errno;
	else if (fstat(fd, &st) != 0)
		err = errno;
	else if (!S_ISREG(st.st_mode))
		err = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
	if (err == 0)
		sb_send_frame(sock, SB_F_MODE, (uint32_t)(st.st_mode & 07777), NULL, 0);
	while (err == 0) {
		ssize_t n = read(fd, file_buf, sizeof(file_buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			err = errno;
		if (n <= 0)
			break;
		if (sent + (size_t)n > max) {
			sb_send_frame(sock, SB_F_OVER, 0, NULL, 0);
			break;
		}
		sent += (size_t)n;
		sb_send_frame(sock, SB_F_OUT, 0, file_buf, (size_t)n);
	}
	if (fd >= 0)
		close(fd);
	sb_send_frame(sock, SB_F_OPDONE, (uint32_t)err, NULL, 0);
}

/* A listing: one line per entry, "TYPE SIZE PATH", TYPE one of f d l o. */
struct lister {
	int sock;
	size_t used, entries, max_entries;
	int over;
	char path[PATH_MAX];
};

static void list_flush(struct lister *ls)
{
	if (ls->used > 0)
		sb_send_frame(ls->sock, SB_F_OUT, 0, file_buf, ls->used);
	ls->used = 0;
}

static void list_line(struct lister *ls, char type, unsigned long long size)
{
	char line[PATH_MAX + 48];
	int n;

	if (ls->entries >= ls->max_entries) {
		ls->over = 1;
		return;
	}
	n = snprintf(line, sizeof(line), "%c %llu %s\n", type, size, ls->path);
	if (n <= 0 || (size_t)n >= sizeof(line))
		return;
	if (ls->used + (size_t)n > sizeof(file_buf))
		list_flush(ls);
	memcpy(file_buf + ls->used, line, (size_t)n);
	ls->used += (size_t)n;
	ls->entries++;
}

static void list_dir(struct lister *ls, int dirfd, int depth)
{
	char *buf = dents_buf[depth];
	size_t base = strlen(ls->path);

	for (;;) {
		long n = syscall(SYS_getdents64, dirfd, buf, sizeof(dents_buf[0]));
		long off;

		if (n <= 0)
			return;
		for (off = 0; off < n && !ls->over;) {
			struct linux_dirent64 *d = (void *)(buf + off);
			size_t nl = strlen(d->d_name);
			struct stat st;
			char type;

			off += d->d_reclen;
			if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0 ||
			    base + 1 + nl >= sizeof(ls->path) ||
			    fstatat(dirfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
				continue;
			if (base > 0)
				ls->path[base] = '/';
			memcpy(ls->path + base + (base > 0), d->d_name, nl + 1);
			type = S_ISREG(st.st_mode) ? 'f' : S_ISDIR(st.st_mode) ? 'd' :
			       S_ISLNK(st.st_mode) ? 'l' : 'o';
			list_line(ls, type, S_ISREG(st.st_mode) ? (unsigned long long)st.st_size : 0);
			if (type == 'd' && depth + 1 < WALK_DEPTH) {
				int fd = openat(dirfd, d->d_name, O_RDONLY | O_DIRECTORY |
						O_NOFOLLOW | O_CLOEXEC);

				if (fd >= 0) {
					list_dir(ls, fd, depth + 1);
					close(fd);
				}
			}
			ls->path[base] = '\0';
		}
		if (ls->over)
			return;
	}
}

void sb_session_list(int ws, int sock, const char *path, size_t max_entries)
{
	struct lister ls;
	int fd = open_beneath(ws, path, O_RDONLY | O_DIRECTORY), err = 0;

	memset(&ls, 0, sizeof(ls));
	ls.sock = sock;
	ls.max_entries = max_entries;
	if (fd < 0) {
		err = errno;
	} else {
		shoal_strlcpy(ls.path, path, sizeof(ls.path));
		list_dir(&ls, fd, 0);
		close(fd);
		list_flush(&ls);
		if (ls.over)
			sb_send_frame(sock, SB_F_OVER, 0, NULL, 0);
	}
	sb_send_frame(sock, SB_F_OPDONE, (uint32_t)err, NULL, 0);
}

/* Unlinks path, never a folder (EISDIR) and never through a link: a
 * symlink at path is itself removed, like rm. */
void sb_session_remove(int ws, int sock, const char *path)
{
	char last[NAME_MAX + 1];
	int dir = -1, err = 0;

	if (bad_path(path))
		err = EINVAL;
	if (err == 0) {
		dir = open_parent(ws, path, last, sizeof(last));
		if (dir < 0)
			err = errno;
	}
	if (err == 0 && unlinkat(dir, last, 0) != 0)
		err = errno;	/* a folder: EISDIR (Linux) */
	if (dir >= 0)
		close(dir);
	sb_send_frame(sock, SB_F_OPDONE, (uint32_t)err, NULL, 0);
}
