/* fuzz_wire.c - fuzz target for the wire decoder: any bytes either decode
 * or fail with EPROTO/ETOOBIG and a message, and whatever decodes encodes
 * to bytes that decode to an equal message and re-encode identically.
 *
 * Built with -DSHOAL_LIBFUZZER (cmake -DSHOAL_FUZZ=ON, clang) it is a
 * libFuzzer target.  Otherwise it is fuzz_wire_replay, which runs the same
 * checks over the files and folders named on its command line (a corpus,
 * tests/data/wire); files ending in .hex are hex text with # comments. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/buf.h"
#include "common/util.h"
#include "transport/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what, const struct shoal_error *err)
{
	fprintf(stderr, "fuzz_wire: %s: %s\n", what,
		err != NULL ? err->msg : "");
	abort();
}

/* The head that peek reports must be the one decode saw. */
static void check_peek(const uint8_t *data, size_t size,
		       const struct shoal_msg *m)
{
	uint64_t version, type, corr;

	if (shoal_wire_peek(data, size, &version, &type, &corr) != SHOAL_OK)
		die("peek failed on a message that decodes", NULL);
	if (version != SHOAL_WIRE_VERSION || type != m->type ||
	    corr != m->corr)
		die("peek disagrees with decode", NULL);
}

/* encode(m) decodes to a message equal to m, and encodes the same again. */
static void check_roundtrip(const struct shoal_msg *m)
{
	struct shoal_msg *again = NULL;
	struct shoal_buf b1, b2;
	struct shoal_error err;

	shoal_buf_init(&b1, 0);
	shoal_buf_init(&b2, 0);
	if (shoal_wire_encode(m, &b1, &err) != SHOAL_OK)
		die("a decoded message does not encode", &err);
	if (shoal_wire_decode(b1.data, b1.len, NULL, &again, &err) !=
	    SHOAL_OK)
		die("an encoded message does not decode", &err);
	if (!shoal_wire_msg_equal(m, again))
		die("the round trip changed the message", NULL);
	if (shoal_wire_encode(again, &b2, &err) != SHOAL_OK)
		die("the round-tripped message does not encode", &err);
	if (b1.len != b2.len || memcmp(b1.data, b2.data, b1.len) != 0)
		die("encoding is not deterministic", NULL);
	shoal_wire_msg_free(again);
	shoal_buf_free(&b1);
	shoal_buf_free(&b2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct shoal_msg *m = NULL;
	struct shoal_error err;
	int rc;

	shoal_error_clear(&err);
	rc = shoal_wire_decode(data, size, NULL, &m, &err);
	if (rc != SHOAL_OK) {
		if (rc != SHOAL_EPROTO && rc != SHOAL_ETOOBIG)
			die("unexpected error code", &err);
		if (err.code != rc || err.msg[0] == '\0')
			die("an error without a message", &err);
		return 0;
	}
	check_peek(data, size, m);
	check_roundtrip(m);
	shoal_wire_msg_free(m);
	return 0;
}

#ifndef SHOAL_LIBFUZZER

#define REPLAY_MAX_FILE ((size_t)80 << 20)

static int hex_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Hex text to bytes, in place; '#' starts a comment to the end of line. */
static int unhex(char *text, size_t *len)
{
	size_t i, n = 0;
	int hi = -1, in_comment = 0;

	for (i = 0; i < *len; i++) {
		int c = (unsigned char)text[i], v = hex_value(c);

		if (c == '\n')
			in_comment = 0;
		if (in_comment || c == ' ' || c == '\t' || c == '\n' ||
		    c == '\r')
			continue;
		if (c == '#') {
			in_comment = 1;
			continue;
		}
		if (v < 0)
			return -1;
		if (hi < 0) {
			hi = v;
			continue;
		}
		text[n++] = (char)(hi << 4 | v);
		hi = -1;
	}
	*len = n;
	return hi < 0 ? 0 : -1;
}

static int ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), t = strlen(tail);

	return n >= t && strcmp(s + n - t, tail) == 0;
}

static int replay_file(const char *path)
{
	struct shoal_error err;
	char *data = NULL;
	size_t len = 0;

	if (shoal_read_file(path, REPLAY_MAX_FILE, &data, &len, &err) !=
	    SHOAL_OK) {
		fprintf(stderr, "fuzz_wire_replay: %s\n", err.msg);
		return -1;
	}
	if (ends_with(path, ".hex") && unhex(data, &len) != 0) {
		fprintf(stderr, "fuzz_wire_replay: %s: bad hex\n", path);
		free(data);
		return -1;
	}
	LLVMFuzzerTestOneInput((const uint8_t *)data, len);
	free(data);
	return 1;
}

static int replay(const char *path);

/* Every entry of a folder, in name order; returns the files replayed. */
static int replay_dir(const char *dir)
{
	struct dirent **names = NULL;
	int i, n, rc, total = 0;

	n = scandir(dir, &names, NULL, alphasort);
	if (n < 0) {
		perror(dir);
		return -1;
	}
	for (i = 0; i < n; i++) {
		char *path = NULL;

		if (names[i]->d_name[0] != '.')
			path = shoal_path_join(dir, names[i]->d_name);
		rc = path != NULL ? replay(path) : 0;
		if (rc < 0 || total < 0)
			total = -1;
		else
			total += rc;
		free(path);
		free(names[i]);
	}
	free(names);
	return total;
}

static int replay(const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		perror(path);
		return -1;
	}
	return S_ISDIR(st.st_mode) ? replay_dir(path) : replay_file(path);
}

int main(int argc, char **argv)
{
	int i, n, total = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: fuzz_wire_replay FILE|DIR...\n");
		return 2;
	}
	for (i = 1; i < argc; i++) {
		n = replay(argv[i]);
		if (n < 0)
			return 1;
		total += n;
	}
	fprintf(stderr, "fuzz_wire_replay: %d inputs, all checks held\n",
		total);
	return total > 0 ? 0 : 1;
}

#endif
