/* err.c - error codes and user-facing error messages. */
#include "err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *shoal_strerror(int code)
{
	switch (code) {
	case SHOAL_OK: return "OK";
	case SHOAL_ENOMEM: return "ENOMEM";
	case SHOAL_EINVAL: return "EINVAL";
	case SHOAL_EIO: return "EIO";
	case SHOAL_ETOOBIG: return "ETOOBIG";
	case SHOAL_EPROTO: return "EPROTO";
	case SHOAL_ECONFIG: return "ECONFIG";
	case SHOAL_ETIMEDOUT: return "ETIMEDOUT";
	case SHOAL_ESTATE: return "ESTATE";
	case SHOAL_ENOTFOUND: return "ENOTFOUND";
	case SHOAL_ESYS: return "ESYS";
	case SHOAL_EUNSUPPORTED: return "EUNSUPPORTED";
	case SHOAL_ECLOSED: return "ECLOSED";
	case SHOAL_EAGAIN: return "EAGAIN";
	case SHOAL_EDENIED: return "EDENIED";
	default: return "EUNKNOWN";
	}
}

int shoal_error_set(struct shoal_error *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return code;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return code;
}

int shoal_error_errno(struct shoal_error *err, int code, const char *fmt, ...)
{
	int saved = errno;
	size_t used;
	va_list ap;

	if (err == NULL)
		return code;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	used = strlen(err->msg);
	snprintf(err->msg + used, sizeof(err->msg) - used, ": %s",
		 strerror(saved));
	return code;
}

int shoal_error_prefix(struct shoal_error *err, const char *fmt, ...)
{
	char old[SHOAL_ERRMSG_MAX];
	size_t used;
	va_list ap;

	if (err == NULL)
		return SHOAL_OK;
	memcpy(old, err->msg, sizeof(old));
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	used = strlen(err->msg);
	snprintf(err->msg + used, sizeof(err->msg) - used, ": %s", old);
	return err->code;
}

void shoal_error_clear(struct shoal_error *err)
{
	if (err == NULL)
		return;
	err->code = SHOAL_OK;
	err->msg[0] = '\0';
}
