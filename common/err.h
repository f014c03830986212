/* err.h - shoal's error codes and the error record that carries a message a
 * user can act on.  Every module translates library errors (nng, hiredis,
 * curl, msgpack, libyaml) into these codes at its boundary. */
#ifndef SHOAL_ERR_H
#define SHOAL_ERR_H

#include <stddef.h>

enum shoal_err {
	SHOAL_OK = 0,
	SHOAL_ENOMEM = -1,	/* allocation failed */
	SHOAL_EINVAL = -2,	/* bad argument or bad input */
	SHOAL_EIO = -3,		/* file or socket I/O failed */
	SHOAL_ETOOBIG = -4,	/* input exceeds a documented limit */
	SHOAL_EPROTO = -5,	/* malformed wire message */
	SHOAL_ECONFIG = -6,	/* the config file is wrong */
	SHOAL_ETIMEDOUT = -7,	/* a deadline passed */
	SHOAL_ESTATE = -8,	/* Redis state error or unreachable */
	SHOAL_ENOTFOUND = -9,	/* no such run, file, key */
	SHOAL_ESYS = -10,	/* a system call failed (errno in message) */
	SHOAL_EUNSUPPORTED = -11, /* the host lacks a needed feature */
	SHOAL_ECLOSED = -12,	/* peer or socket closed */
	SHOAL_EAGAIN = -13,	/* try again later */
	SHOAL_EDENIED = -14,	/* authentication or permission refused */
};

/* The message buffer is fixed so that setting an error never allocates. */
#define SHOAL_ERRMSG_MAX 1024

struct shoal_error {
	int code;			/* enum shoal_err, 0 when no error */
	char msg[SHOAL_ERRMSG_MAX];	/* NUL-terminated, user-facing */
};

/* Short name of a code ("ENOMEM", ...). Never NULL. */
const char *shoal_strerror(int code);

/* Sets err (if not NULL) and returns code, so that callers can write
 * `return shoal_error_set(err, SHOAL_EINVAL, "...", ...);`. */
int shoal_error_set(struct shoal_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Like shoal_error_set, appending ": strerror(errno)". */
int shoal_error_errno(struct shoal_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prefixes an existing message with more context ("loading x: <old>"). */
int shoal_error_prefix(struct shoal_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

void shoal_error_clear(struct shoal_error *err);

#endif
