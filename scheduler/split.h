/* split.h - cuts one input item (a file's bytes) into chunks: by lines, by
 * bytes or at lines matching a regex, with overlap.  Pure and streaming: the
 * splitter walks a buffer it borrows and yields (offset, length) views, so
 * a 10 MB single line costs no copy. */
#ifndef SHOAL_SPLIT_H
#define SHOAL_SPLIT_H

#include <regex.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "scheduler/config.h"

struct shoal_chunk {
	uint32_t index;		/* 0-based chunk number within the item */
	uint64_t byte_offset;	/* bytes of the item before the chunk */
	uint64_t byte_len;
	uint64_t line_offset;	/* source lines before the chunk's first line */
};

/* Iterator state; treat as opaque.  One thread at a time. */
struct shoal_splitter {
	struct shoal_split_conf conf;	/* copy; pattern borrowed */
	const char *data;		/* borrowed */
	size_t len;
	size_t pos;			/* start of the next chunk; by lines and
					 * regex, before its overlap is added */
	uint64_t line;			/* line number at pos */
	uint32_t next_index;
	int done;
	int have_regex;
	regex_t re;
	size_t prev_end;		/* by bytes: end of the last chunk */
};

/* Prepares to split data[0..len), which must outlive the splitter.  With
 * by: regex, compiles the pattern (SHOAL_ECONFIG with regerror's text when
 * it is invalid).  Also SHOAL_ECONFIG when by: lines/bytes has size 0, or
 * size > 0 and overlap >= size; SHOAL_ETOOBIG when the item would give
 * more than UINT32_MAX chunks.  shoal_split_free is safe after a failed
 * init. */
int shoal_split_init(struct shoal_splitter *s, const struct shoal_split_conf *conf,
		     const char *data, size_t len, struct shoal_error *err);

/* Yields the next chunk: returns 1 and fills *out, or 0 at the end.
 * Rules (docs/CONFIG.md `split:`):
 *  - an empty item yields one empty chunk (so every item gives a subtask);
 *    by: none yields the whole item as one chunk;
 *  - lines end at '\n' (a "\r\n" is one line end and stays inside the
 *    chunk's bytes); a last line without '\n' is a line; by lines and
 *    regex, chunks start and end on line starts;
 *  - chunk k+1 starts `overlap` lines (bytes) before chunk k ends, and the
 *    chunks stop once one reaches the end of the item: no chunk is made of
 *    overlap alone, and every chunk brings at least one new byte;
 *  - by: lines, size N, overlap K: chunk 0 is lines [0,N), chunk 1 lines
 *    [N-K, 2N-K), ..., chunk k lines [k(N-K), k(N-K)+N); the last one is
 *    cut at the end of the item.  A single 10 MB line is one chunk;
 *  - by: bytes, size N, overlap K: the same over bytes, except that a cut
 *    never falls inside a UTF-8 sequence when it can avoid it: the end
 *    moves back (<= 3 bytes) to a sequence start, and so does the next
 *    start (making that overlap up to 3 bytes longer), as long as the
 *    chunk still brings a new byte (always possible when size - overlap
 *    >= 7); bytes that are not UTF-8 are cut anywhere;
 *  - by: regex starts a new chunk at each line matching pattern (POSIX
 *    ERE; the pattern sees the line without its "\n" or "\r\n", so `^`
 *    and `$` are the line's ends; a line over 2 GiB never matches).  The text before the first match, if
 *    any, is chunk 0; with no match the item is one chunk.  Each chunk
 *    after the first is preceded by the `overlap` lines before its start
 *    (fewer at the start of the item; they may reach back past the
 *    previous chunk's start when it is shorter).  When size > 0, no chunk
 *    has more than size lines, overlap included: a longer section is cut
 *    into pieces exactly as by: lines;
 *  - line_offset is the number of '\n' in data[0..byte_offset), so line
 *    i (1-based) of a chunk is line line_offset + i of the item.
 * The work is linear in len plus the overlap bytes handed out. */
int shoal_split_next(struct shoal_splitter *s, struct shoal_chunk *out);

/* Frees the compiled pattern; the buffer stays the caller's. */
void shoal_split_free(struct shoal_splitter *s);

#endif
