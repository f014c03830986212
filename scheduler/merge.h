/* merge.h - turns the results of a stage's subtasks, fed in task order,
 * into one output file: concat, jsonl or json, with optional dedupe_by and
 * sort_by.  The file is written to "<output>.tmp.<pid>" in the same folder
 * and renamed at finish (after fsync), so it is never seen half-written.
 *
 * Strategies:
 *  - concat: the results' bytes exactly, appended in order (no newline is
 *    added between results, nothing is stripped); no dedupe_by/sort_by.
 *  - jsonl: each non-blank line of each result is a JSON object; the
 *    output has one compact object per line, keys in their input order.
 *  - json: the same records, as one JSON array: "[\n" then one compact
 *    record per line separated by ",\n", then "\n]\n" ("[]\n" if none).
 * Lines of a result: a leading UTF-8 BOM is dropped; "\n" and "\r\n" end
 * lines; a last line without one counts; blank lines (spaces, tabs, '\r')
 * are skipped; a line over 16 MiB is refused (SHOAL_ETOOBIG).  Records are
 * re-encoded compactly: numbers keep their shortest round-trip form (0.1
 * stays 0.1, 1.0 stays 1.0).
 *  - dedupe_by: a record's key is the JSON encodings of the named
 *    top-level fields (a missing field counts as null); the first record
 *    with a key is kept, in feeding order (1 and 1.0 are different keys).
 *  - sort_by: a stable sort on the named fields in turn: null (or missing)
 *    < false < true < numbers (compared numerically, integers and reals
 *    alike) < strings (bytewise) < arrays and objects (equal to each
 *    other).  Dedupe happens before the sort.
 *
 * Memory: without sort_by every strategy streams records to the
 * temporary file as they are added (through a 1 MiB buffer); dedupe_by
 * keeps one key per kept record; sort_by keeps each kept record's compact
 * encoding plus its sort field values until finish.  Held records and
 * dedupe keys are each limited to 1 GiB (SHOAL_ETOOBIG beyond).
 *
 * One thread at a time per merger. */
#ifndef SHOAL_MERGE_H
#define SHOAL_MERGE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "scheduler/config.h"

struct shoal_merger;

/* Opens a merger writing to output_path (its folder is created, mkdir -p).
 * conf is copied, but its field name arrays are borrowed: they must
 * outlive the merger.  SHOAL_ECONFIG for an unknown strategy, or dedupe_by
 * or sort_by with concat.  On success the caller frees *out with
 * shoal_merge_free. */
int shoal_merge_open(const struct shoal_merge_conf *conf, const char *output_path,
		     struct shoal_merger **out, struct shoal_error *err);

/* Checks that one subtask's output is valid for the strategy (for jsonl and
 * json: every non-blank line is a JSON object; concat takes any bytes;
 * dedupe_by/sort_by fields may be missing: they count as null).  Called
 * when a result arrives, so that a bad output fails its subtask with a
 * clear error instead of the whole merge.  On failure (SHOAL_EINVAL, or
 * SHOAL_ETOOBIG for a line over 16 MiB) err says "line N: <jansson's
 * message>" or "line N: not a JSON object", N counting from 1. */
int shoal_merge_check(const struct shoal_merge_conf *conf, const char *data,
		      size_t len, struct shoal_error *err);

/* Adds one subtask's output (already checked; a bad line still fails with
 * the same error as check, after the lines before it were added).  Feed
 * outputs in task order: that order is the output order unless sort_by is
 * given.  data is only read during the call. */
int shoal_merge_add(struct shoal_merger *m, const char *data, size_t len,
		    struct shoal_error *err);

/* Writes the remaining records, fsyncs and renames the file into place.
 * *nrecords: records written (for concat: the output's non-blank lines,
 * as shoal_records_each would count them).  May be called once; on
 * failure the temporary file is left for shoal_merge_free to remove. */
int shoal_merge_finish(struct shoal_merger *m, uint64_t *nrecords,
		       struct shoal_error *err);

/* Frees m; removes the temporary file when finish was not reached. */
void shoal_merge_free(struct shoal_merger *m);

/* Calls cb once per record of a merged output file's contents, in order:
 * jsonl and concat: each non-blank line, without its "\n" or "\r\n" (a
 * leading BOM dropped, lines over 16 MiB refused); json: each element of
 * the top-level array, serialised compactly (SHOAL_EINVAL when data is not
 * one JSON array).  rec is not NUL-terminated and is valid only during
 * the call.  Used by `for_each: {stage: ID}`.  A non-zero return from cb
 * stops and is returned. */
typedef int (*shoal_record_cb)(void *arg, const char *rec, size_t len);
int shoal_records_each(int strategy, const char *data, size_t len,
		       shoal_record_cb cb, void *arg, struct shoal_error *err);

#endif
