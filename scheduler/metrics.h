/* metrics.h - the harness's Prometheus endpoint: `GET /metrics` (text
 * exposition format 0.0.4) and `GET /healthz` (`ok`), served by nng's HTTP
 * server on metrics.listen.
 *
 * Threads: the harness thread fills a struct shoal_metrics_snapshot and
 * calls shoal_metrics_publish() after each loop turn; that only copies the
 * snapshot under the endpoint's mutex.  nng's HTTP threads copy the latest
 * snapshot under the same mutex and render the text outside it, so a
 * scrape costs the harness nothing and never calls back into it.
 *
 * Labels are low-cardinality only: a stage id, a state or status, a token
 * kind.  Never a run id per subtask, a worker id, a lease id.
 *
 * Every metric, its type and its labels (the single list; docs follow it):
 *
 *   shoal_build_info{version}                          gauge, always 1
 *   shoal_metrics_snapshot_age_seconds                 gauge
 *   shoal_backlog                                      gauge
 *   shoal_workers                                      gauge
 *   shoal_workers_wanted                               gauge
 *   shoal_worker_slots                                 gauge
 *   shoal_worker_slots_free                            gauge
 *   shoal_stage_subtasks{stage,state}                  gauge
 *       state = backlog | leased | running
 *   shoal_stage_subtasks_finished_total{stage,status}  counter
 *       status = done | failed | dead
 *   shoal_subtask_schedule_to_start_seconds{stage}     histogram
 *   shoal_subtask_run_seconds{stage}                   histogram
 *   shoal_model_requests_total                         counter
 *   shoal_model_tokens_total{kind}                     counter
 *       kind = input | output
 *   shoal_model_retries_total                          counter
 *   shoal_model_rate_limited_total                     counter (HTTP 429)
 */
#ifndef SHOAL_METRICS_H
#define SHOAL_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"

/* ---- histograms ------------------------------------------------------ */

/* Upper bounds (seconds) of the fixed buckets, ascending; +Inf follows. */
#define SHOAL_HISTOGRAM_BUCKETS 16
extern const double shoal_histogram_bounds[SHOAL_HISTOGRAM_BUCKETS];

/* A latency histogram the harness feeds; plain data, no lock: it belongs
 * to the harness thread and travels by copy in a snapshot. */
struct shoal_histogram {
	uint64_t buckets[SHOAL_HISTOGRAM_BUCKETS + 1];	/* per bucket, not
							 * cumulative; the
							 * last is +Inf */
	uint64_t count;
	double sum;			/* seconds */
};

/* Adds one observation (seconds; negative and NaN count as 0). */
void shoal_histogram_observe(struct shoal_histogram *h, double seconds);

/* ---- the snapshot ---------------------------------------------------- */

#define SHOAL_METRICS_STAGE_ID_MAX 64	/* longer ids are cut */
#define SHOAL_METRICS_STAGES_MAX 256	/* more stages are left out */

struct shoal_metrics_stage {
	char id[SHOAL_METRICS_STAGE_ID_MAX];
	uint64_t backlog;		/* gauge: waiting for a slot (pending
					 * and due retries) */
	uint64_t leased;		/* gauge: leased, not yet started */
	uint64_t running;		/* gauge: started on a worker */
	uint64_t done;			/* counter: finished successfully */
	uint64_t failed;		/* counter: attempts that failed,
					 * retried or not */
	uint64_t dead;			/* counter: subtasks given up */
	struct shoal_histogram schedule_to_start; /* lease granted - first
						   * became due */
	struct shoal_histogram run;	/* the attempt's run time */
};

struct shoal_metrics_snapshot {
	const struct shoal_metrics_stage *stages;	/* borrowed for the
							 * call */
	size_t nstages;
	uint64_t backlog;		/* all stages */
	uint32_t workers;		/* connected */
	uint32_t workers_wanted;	/* the autoscaling decision */
	uint64_t slots;			/* of connected workers */
	uint64_t slots_free;
	uint64_t model_requests;	/* counters; 0 until agents exist */
	uint64_t model_input_tokens;
	uint64_t model_output_tokens;
	uint64_t model_retries;
	uint64_t model_rate_limited;	/* HTTP 429 replies */
	double model_cost_usd;		/* at the models' prices; 0 unpriced */
};

/* Renders s as exposition text into out (appended).  age_s is the
 * snapshot's age, shown as shoal_metrics_snapshot_age_seconds.  Pure:
 * the endpoint uses it, and so can `shoal status` or a test. */
int shoal_metrics_render(const struct shoal_metrics_snapshot *s, double age_s,
			 struct shoal_buf *out);

/* ---- the endpoint ---------------------------------------------------- */

struct shoal_metrics;

/* Serves on listen, "host:port" (":port" means every address; port 0
 * picks a free one, see shoal_metrics_port).  Until the first publish,
 * /metrics shows an empty snapshot.  On success the caller closes *out
 * with shoal_metrics_close. */
int shoal_metrics_open(const char *listen, struct shoal_metrics **out,
		       struct shoal_error *err);

/* The TCP port it listens on. */
int shoal_metrics_port(const struct shoal_metrics *m);

/* Copies s (and its stages) for the next scrape; s stays the caller's.
 * Cheap enough for every loop turn: one memcpy under the mutex; no I/O.
 * Returns SHOAL_ENOMEM if the copy could not grow (the previous snapshot
 * stays). */
int shoal_metrics_publish(struct shoal_metrics *m,
			  const struct shoal_metrics_snapshot *s);

/* Stops the server (waits for running handlers) and frees m. */
void shoal_metrics_close(struct shoal_metrics *m);

#endif
