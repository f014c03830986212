/* util.c - clock, unit parsing and file helpers. */

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t shoal_now_ms(void)
{
	return shoal_now_us() / 1000;
}

int64_t shoal_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t shoal_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int shoal_parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (s == NULL || *s == '\0')
		return SHOAL_EINVAL;
	for (; *s != '\0'; s++) {
		unsigned d;

		if (*s < '0' || *s > '9')
			return SHOAL_EINVAL;
		d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return SHOAL_EINVAL;
		v = v * 10 + d;
	}
	*out = v;
	return SHOAL_OK;
}

/* Parses "<number>[.<fraction>]" and returns the unit suffix in *rest.
 * The value is returned scaled by 1000 (milli-units) to keep fractions. */
static int parse_decimal_milli(const char *s, uint64_t *milli, const char **rest)
{
	uint64_t whole = 0, frac = 0, scale = 1000;
	int digits = 0;

	while (*s >= '0' && *s <= '9') {
		if (whole > UINT64_MAX / 10 - 10)
			return SHOAL_EINVAL;
		whole = whole * 10 + (uint64_t)(*s - '0');
		s++;
		digits++;
	}
	if (*s == '.') {
		s++;
		while (*s >= '0' && *s <= '9') {
			if (scale > 1) {
				scale /= 10;
				frac += (uint64_t)(*s - '0') * scale;
			}
			s++;
			digits++;
		}
	}
	if (digits == 0 || whole > UINT64_MAX / 1000 - 1)
		return SHOAL_EINVAL;
	*milli = whole * 1000 + frac;
	*rest = s;
	return SHOAL_OK;
}

int shoal_parse_duration_ms(const char *s, uint64_t *out_ms)
{
	static const struct { const char *unit; uint64_t ms; } units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "", 1000 }, { "m", 60000 },
		{ "min", 60000 }, { "h", 3600000 }, { "d", 86400000 },
	};
	const char *rest;
	uint64_t milli;
	size_t i;

	if (s == NULL || parse_decimal_milli(s, &milli, &rest) != SHOAL_OK)
		return SHOAL_EINVAL;
	for (i = 0; i < SHOAL_ARRAY_LEN(units); i++) {
		if (strcmp(rest, units[i].unit) != 0)
			continue;
		if (units[i].ms > 1 && milli > UINT64_MAX / units[i].ms)
			return SHOAL_EINVAL;
		*out_ms = milli * units[i].ms / 1000;
		return SHOAL_OK;
	}
	return SHOAL_EINVAL;
}

int shoal_parse_size(const char *s, uint64_t *out_bytes)
{
	static const struct { const char *unit; uint64_t mul; } units[] = {
		{ "", 1 }, { "B", 1 }, { "K", 1024 }, { "KB", 1000 },
		{ "KiB", 1024 }, { "M", 1048576 }, { "MB", 1000000 },
		{ "MiB", 1048576 }, { "G", 1073741824 }, { "GB", 1000000000 },
		{ "GiB", 1073741824 },
	};
	const char *rest;
	uint64_t milli;
	size_t i;

	if (s == NULL || parse_decimal_milli(s, &milli, &rest) != SHOAL_OK)
		return SHOAL_EINVAL;
	for (i = 0; i < SHOAL_ARRAY_LEN(units); i++) {
		if (strcmp(rest, units[i].unit) != 0)
			continue;
		if (milli / 1000 > UINT64_MAX / units[i].mul)
			return SHOAL_EINVAL;
		*out_bytes = milli / 1000 * units[i].mul +
			     milli % 1000 * units[i].mul / 1000;
		return SHOAL_OK;
	}
	return SHOAL_EINVAL;
}

int shoal_read_file(const char *path, size_t max, char **data, size_t *len,
		    struct shoal_error *err)
{
	struct stat st;
	char *p = NULL;
	size_t got = 0;
	int fd, rc = SHOAL_OK;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return shoal_error_errno(err, errno == ENOENT ? SHOAL_ENOTFOUND
					 : SHOAL_EIO, "cannot open %s", path);
	if (fstat(fd, &st) != 0) {
		rc = shoal_error_errno(err, SHOAL_EIO, "cannot stat %s", path);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = shoal_error_set(err, SHOAL_EINVAL, "%s is not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		rc = shoal_error_set(err, SHOAL_ETOOBIG,
				     "%s is %lld bytes, over the limit of %zu",
				     path, (long long)st.st_size, max);
		goto out;
	}
	p = malloc((size_t)st.st_size + 1);
	if (p == NULL) {
		rc = shoal_error_set(err, SHOAL_ENOMEM, "out of memory reading %s", path);
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, p + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = shoal_error_errno(err, SHOAL_EIO, "cannot read %s", path);
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	p[got] = '\0';
	*data = p;
	*len = got;
	p = NULL;
out:
	free(p);
	close(fd);
	return rc;
}

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int shoal_write_file_atomic(const char *path, const void *data, size_t len,
			    struct shoal_error *err)
{
	size_t n = strlen(path) + 32;
	char *tmp = malloc(n);
	int fd, rc = SHOAL_OK;

	if (tmp == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = shoal_error_errno(err, SHOAL_EIO, "cannot create %s", tmp);
		goto out;
	}
	if (write_all(fd, data, len) != 0 || fsync(fd) != 0) {
		rc = shoal_error_errno(err, SHOAL_EIO, "cannot write %s", tmp);
		close(fd);
		unlink(tmp);
		goto out;
	}
	close(fd);
	if (rename(tmp, path) != 0) {
		rc = shoal_error_errno(err, SHOAL_EIO, "cannot rename %s to %s",
				       tmp, path);
		unlink(tmp);
	}
out:
	free(tmp);
	return rc;
}

int shoal_mkdir_p(const char *path, unsigned mode, struct shoal_error *err)
{
	char *copy = shoal_strdup(path);
	char *p;
	int rc = SHOAL_OK;

	if (copy == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	if (copy[0] == '\0') {
		free(copy);
		return shoal_error_set(err, SHOAL_EINVAL, "empty folder name");
	}
	for (p = copy + 1; ; p++) {
		char c = *p;

		if (c != '/' && c != '\0')
			continue;
		*p = '\0';
		if (mkdir(copy, (mode_t)mode) != 0 && errno != EEXIST) {
			rc = shoal_error_errno(err, SHOAL_EIO,
					       "cannot create folder %s", copy);
			break;
		}
		*p = c;
		if (c == '\0')
			break;
	}
	free(copy);
	return rc;
}

int shoal_mkdir_p_parent(const char *path, struct shoal_error *err)
{
	char *copy = shoal_strdup(path);
	char *slash;
	int rc = SHOAL_OK;

	if (copy == NULL)
		return shoal_error_set(err, SHOAL_ENOMEM, "out of memory");
	slash = strrchr(copy, '/');
	if (slash != NULL && slash != copy) {
		*slash = '\0';
		rc = shoal_mkdir_p(copy, 0755, err);
	}
	free(copy);
	return rc;
}

char *shoal_path_join(const char *dir, const char *name)
{
	size_t n;
	char *p;

	if (name[0] == '/' || dir == NULL || dir[0] == '\0')
		return shoal_strdup(name);
	n = strlen(dir) + strlen(name) + 2;
	p = malloc(n);
	if (p != NULL)
		snprintf(p, n, "%s%s%s", dir,
			 dir[strlen(dir) - 1] == '/' ? "" : "/", name);
	return p;
}

char *shoal_strdup(const char *s)
{
	return s == NULL ? NULL : strdup(s);
}

size_t shoal_strlcpy(char *dst, const char *src, size_t n)
{
	size_t len = strlen(src);

	if (n > 0) {
		size_t c = len < n - 1 ? len : n - 1;

		memcpy(dst, src, c);
		dst[c] = '\0';
	}
	return len;
}

int shoal_random_bytes(void *buf, size_t n)
{
	char *p = buf;

	while (n > 0) {
		ssize_t got = getrandom(p, n, 0);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return SHOAL_ESYS;
		p += got;
		n -= (size_t)got;
	}
	return SHOAL_OK;
}

void shoal_hex(const void *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *p = in;
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

char *shoal_strdupf(const char *fmt, ...)
{
	va_list ap;
	char *buf;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || (buf = malloc((size_t)n + 1)) == NULL)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(buf, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return buf;
}
