/* merge.h - turns the results of a stage's subtasks, fed in task order,
 * into one output file: concat, jsonl, json or spans, with optional
 * dedupe_by and sort_by, written in a chosen format.  The file is written
 * to "<output>.tmp.<pid>" in the same folder and renamed at finish (after
 * fsync), so it is never seen half-written.  docs/MERGE.md is the long
 * form of this comment.
 *
 * Strategies:
 *  - concat: the results' bytes exactly, appended in order (no newline is
 *    added between results, nothing is stripped); no dedupe_by/sort_by.
 *  - jsonl: each non-blank line of each result is a JSON object; the
 *    output has one compact object per line, keys in their input order.
 *  - json: the same records, as one JSON array: "[\n" then one compact
 *    record per line separated by ",\n", then "\n]\n" ("[]\n" if none).
 *  - spans: jsonl records, each covering the positions [start, end] (the
 *    fields conf->start and conf->end: integers >= 0, start <= end,
 *    inclusive).  Records with the same key (the JSON encodings of the
 *    conf->key fields, a missing field counting as null; no key fields:
 *    one group) whose ranges overlap - or touch (end + 1 == start) with
 *    join_adjacent - are joined into one record, transitively: the
 *    earliest start, the latest end, and every other field taken from the
 *    first of the joined records, in (start, task order), that has it.
 *    Nothing is combined: arrays are not concatenated, objects not merged,
 *    a field that is present with null stays null.  Records come out
 *    sorted by key (the key fields in turn, in sort_by's order of types
 *    and values, records whose keys differ only in encoding, like 1 and
 *    1.0, apart), then start; or by sort_by when given (ties in key,
 *    start order).  dedupe_by drops repeated records as they are added,
 *    before any joining.  key, start, end and join_adjacent are refused
 *    with other strategies.
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
 * Formats (enum shoal_output_format, given to shoal_merge_open2):
 *  - default: what the strategy writes (concat: raw bytes; jsonl and
 *    spans: jsonl; json: the array above).
 *  - jsonl, json: as the strategies of those names, whatever the strategy.
 *  - csv: a header row of the column names, then one row per record: each
 *    column's top-level field, strings as they are, numbers as the
 *    records write them, true/false, null or missing = empty, arrays and
 *    objects as compact JSON.  A field (or column name) holding '"', ',',
 *    '\n' or '\r' is quoted, '"' doubled (RFC 4180); lines end in "\n",
 *    not CRLF.  An empty string and a missing field look the same.
 *  - text: one line per record: its "text" field when that is a string,
 *    otherwise its compact JSON (a text holding newlines spans several
 *    lines).  With concat, which has no records, the bytes as they are
 *    (as default).
 * concat takes only default and text; csv needs columns, and columns
 * need csv (SHOAL_ECONFIG).
 *
 * Memory: without sort_by, jsonl and json (in every format) and concat
 * stream records to the temporary file as they are added (through a 1 MiB
 * buffer);
 * dedupe_by keeps one key per kept record; sort_by keeps each kept
 * record's output form plus its sort field values until finish.  spans
 * must see every record before it can write one: it holds each record's
 * compact encoding, its key's encoding and values, start and end (about
 * 64 bytes plus the record), sorts them by (key, start) at finish and
 * joins them in one sweep, O(n log n).  Held records, spans records,
 * spans keys and dedupe keys are each limited to 1 GiB (SHOAL_ETOOBIG
 * beyond).
 *
 * One thread at a time per merger. */
#ifndef SHOAL_MERGE_H
#define SHOAL_MERGE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "scheduler/config.h"

struct shoal_merger;
struct json_t;

/* Opens a merger writing to output_path (its folder is created, mkdir -p)
 * in the strategy's default format.  conf is copied, but its field name
 * arrays are borrowed: they must outlive the merger.  SHOAL_ECONFIG for
 * settings shoal_merge_conf_check refuses.  On success the caller frees
 * *out with shoal_merge_free. */
int shoal_merge_open(const struct shoal_merge_conf *conf, const char *output_path,
		     struct shoal_merger **out, struct shoal_error *err);

/* shoal_merge_open writing format (enum shoal_output_format); columns
 * (ncolumns names, csv only) are borrowed like conf's field names. */
int shoal_merge_open2(const struct shoal_merge_conf *conf, int format,
		      char *const *columns, size_t ncolumns,
		      const char *output_path, struct shoal_merger **out,
		      struct shoal_error *err);

/* Checks a stage's merge settings without opening anything (the config
 * loader's rules, plus start != end): a known strategy and format;
 * dedupe_by and sort_by not with concat; spans with start and end, two
 * different fields; key, start, end and join_adjacent only with spans;
 * concat only in default or text; columns with csv and csv with columns.
 * SHOAL_ECONFIG with "merge: ..." otherwise. */
int shoal_merge_conf_check(const struct shoal_merge_conf *conf, int format,
			   size_t ncolumns, struct shoal_error *err);

/* Checks that one subtask's output is valid for the strategy (for jsonl,
 * json and spans: every non-blank line is a JSON object; concat takes any
 * bytes; dedupe_by/sort_by/key fields may be missing: they count as null;
 * spans: the start and end fields are integers >= 0 and start <= end).
 * The format does not matter here.  Called when a result arrives, so that
 * a bad output fails its subtask with a clear error instead of the whole
 * merge.  On failure (SHOAL_EINVAL, or SHOAL_ETOOBIG for a line over 16
 * MiB) err says "line N: <jansson's message>", "line N: not a JSON
 * object" or, for spans, "line N: field 'F' is missing", "... must be an
 * integer, not a string", "... is negative (-1)" or "line N: field 'S'
 * (9) is greater than field 'E' (7)", N counting from 1.  SHOAL_ECONFIG
 * when conf itself is refused. */
int shoal_merge_check(const struct shoal_merge_conf *conf, const char *data,
		      size_t len, struct shoal_error *err);

/* Adds one subtask's output (already checked; a bad line still fails with
 * the same error as check, after the lines before it were added).  Feed
 * outputs in task order: that order is the output order unless sort_by is
 * given.  data is only read during the call. */
int shoal_merge_add(struct shoal_merger *m, const char *data, size_t len,
		    struct shoal_error *err);

/* Writes the remaining records (spans: joins every record now), fsyncs and renames the file into place.
 * *nrecords: records written (for concat: the output's non-blank lines,
 * as shoal_records_each would count them).  May be called once; on
 * failure the temporary file is left for shoal_merge_free to remove. */
int shoal_merge_finish(struct shoal_merger *m, uint64_t *nrecords,
		       struct shoal_error *err);

/* Frees m; removes the temporary file when finish was not reached. */
void shoal_merge_free(struct shoal_merger *m);

/* Calls cb once per record of a merged output file's contents, in order:
 * jsonl, spans and concat: each non-blank line, without its "\n" or "\r\n" (a
 * leading BOM dropped, lines over 16 MiB refused); json: each element of
 * the top-level array, serialised compactly (SHOAL_EINVAL when data is not
 * one JSON array).  rec is not NUL-terminated and is valid only during
 * the call.  Used by `for_each: {stage: ID}`.  A non-zero return from cb
 * stops and is returned. */
typedef int (*shoal_record_cb)(void *arg, const char *rec, size_t len);
int shoal_records_each(int strategy, const char *data, size_t len,
		       shoal_record_cb cb, void *arg, struct shoal_error *err);

/* The strategy to give shoal_records_each for an output written by
 * strategy in format: json => json; jsonl => jsonl; csv and text =>
 * concat (lines: a csv file's header is a record too, and a quoted
 * newline splits a row); default => the strategy (spans => jsonl). */
int shoal_merge_records_strategy(int strategy, int format);

/* Appends v to b as compact JSON, the way the merger writes records:
 * keys in their order, numbers in their shortest round-trip form (0.1,
 * 1.0, 1e+300), strings with '"', '\' and control bytes escaped and
 * UTF-8 as it is.  SHOAL_ENOMEM or SHOAL_ETOOBIG (b's max) on failure,
 * b then holding part of the encoding. */
int shoal_merge_encode_json(struct shoal_buf *b, const struct json_t *v);

#endif
