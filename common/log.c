/* log.c - stderr logging, text or JSON lines. */
#include "log.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static enum shoal_log_level log_min = SHOAL_LOG_INFO;
static int log_json;
static const char *log_component = "shoal";

void shoal_log_setup(enum shoal_log_level min, int json, const char *component)
{
	log_min = min;
	log_json = json;
	if (component != NULL)
		log_component = component;
}

int shoal_log_is_json(void)
{
	return log_json;
}

static const char *level_name(enum shoal_log_level level)
{
	static const char *names[] = { "debug", "info", "warn", "error" };

	return names[level <= SHOAL_LOG_ERROR ? level : SHOAL_LOG_ERROR];
}

/* Writes s as a JSON string body (without quotes). */
static void json_escape(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
}

void shoal_log(enum shoal_log_level level, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	if (level < log_min)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log_json) {
		fprintf(stderr, "{\"ts\":%lld,\"level\":\"%s\",\"component\":\"%s\",\"msg\":\"",
			(long long)shoal_wall_ms(), level_name(level), log_component);
		json_escape(stderr, msg);
		fputs("\"}\n", stderr);
		return;
	}
	fprintf(stderr, "%s: %s%s%s\n", log_component,
		level == SHOAL_LOG_INFO ? "" : level_name(level),
		level == SHOAL_LOG_INFO ? "" : ": ", msg);
}
