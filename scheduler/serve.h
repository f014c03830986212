/* serve.h - `shoal serve` and `shoal run --server` (see serve.c). */
#ifndef SHOAL_SERVE_H
#define SHOAL_SERVE_H

#include <jansson.h>

#include "common/err.h"
#include "scheduler/harness.h"

/* Serves runs on listen_url until SIGINT/SIGTERM; config_path is the
 * server's config (shoal_config_load_server).  base: the options every
 * run gets (state_dir, self_exe, json, redis_url). */
int shoal_serve(const char *config_path, const char *listen_url,
		const struct shoal_run_opts *base, struct shoal_error *err);

/* Sends one run to the server at url and waits for its end: *reply is the
 * server's JSON reply (the caller decrefs). */
int shoal_serve_submit(const char *url, const char *config_abs, const char *token,
		       int resume, int new_run, json_t **reply, struct shoal_error *err);

#endif
