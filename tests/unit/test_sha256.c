/* test_sha256.c - SHA-256 against the FIPS 180-4 / NIST example vectors, and
 * proof that feeding the input in pieces gives the same digest. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/sha256.h"
#include "common/util.h"
#include "test.h"

static void hex_of(const void *data, size_t len, char out[65])
{
	uint8_t d[32];

	shoal_sha256(data, len, d);
	shoal_hex(d, sizeof(d), out);
}

static void sha256_of_empty_string(void)
{
	char hex[65];

	hex_of("", 0, hex);
	CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb924"
		       "27ae41e4649b934ca495991b7852b855");
}

static void sha256_of_abc(void)
{
	char hex[65];

	hex_of("abc", 3, hex);
	CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223"
		       "b00361a396177a9cb410ff61f20015ad");
}

static void sha256_of_448_bit_vector(void)
{
	static const char msg[] =
		"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	char hex[65];

	hex_of(msg, strlen(msg), hex);
	CHECK_STR(hex, "248d6a61d20638b8e5c026930c3e6039"
		       "a33ce45964ff2167f6ecedd419db06c1");
}

static void sha256_of_896_bit_vector(void)
{
	static const char msg[] =
		"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
		"hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
	char hex[65];

	hex_of(msg, strlen(msg), hex);
	CHECK_STR(hex, "cf5b16a778af8380036ce59e7b049237"
		       "0b249b11e8f07a51afac45037afee9d1");
}

static void sha256_of_a_million_a(void)
{
	size_t n = 1000000;
	char *msg = malloc(n);
	char hex[65];

	CHECK(msg != NULL);
	if (msg == NULL)
		return;
	memset(msg, 'a', n);
	hex_of(msg, n, hex);
	CHECK_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67"
		       "f1809a48a497200e046d39ccc7112cd0");
	free(msg);
}

/* Digest of msg fed in pieces of `step` bytes. */
static void hex_in_steps(const uint8_t *msg, size_t len, size_t step,
			 char out[65])
{
	struct shoal_sha256 c;
	uint8_t d[32];
	size_t off;

	shoal_sha256_init(&c);
	for (off = 0; off < len; off += step)
		shoal_sha256_update(&c, msg + off,
				    len - off < step ? len - off : step);
	shoal_sha256_final(&c, d);
	shoal_hex(d, sizeof(d), out);
}

static void sha256_split_updates_equal_one_update(void)
{
	uint8_t msg[1000];
	size_t len, step, i;
	char whole[65], parts[65];

	for (i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)(i * 131 + 7);
	/* Lengths around the 55/56/64-byte padding edges and beyond. */
	for (len = 0; len <= 200; len++) {
		hex_of(msg, len, whole);
		for (step = 1; step <= 70; step += 3) {
			hex_in_steps(msg, len, step, parts);
			CHECK_STR(parts, whole);
		}
	}
	hex_of(msg, sizeof(msg), whole);
	hex_in_steps(msg, sizeof(msg), 127, parts);
	CHECK_STR(parts, whole);
}

static void sha256_million_a_in_odd_pieces(void)
{
	static char piece[997];
	struct shoal_sha256 c;
	size_t left = 1000000;
	uint8_t d[32];
	char hex[65];

	memset(piece, 'a', sizeof(piece));
	shoal_sha256_init(&c);
	while (left > 0) {
		size_t n = left < sizeof(piece) ? left : sizeof(piece);

		shoal_sha256_update(&c, piece, n);
		left -= n;
	}
	shoal_sha256_final(&c, d);
	shoal_hex(d, sizeof(d), hex);
	CHECK_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67"
		       "f1809a48a497200e046d39ccc7112cd0");
}

int main(void)
{
	RUN(sha256_of_empty_string);
	RUN(sha256_of_abc);
	RUN(sha256_of_448_bit_vector);
	RUN(sha256_of_896_bit_vector);
	RUN(sha256_of_a_million_a);
	RUN(sha256_split_updates_equal_one_update);
	RUN(sha256_million_a_in_odd_pieces);
	return test_done();
}
