/* sha256.h - SHA-256 (FIPS 180-4), for content addresses and output digests. */
#ifndef SHOAL_SHA256_H
#define SHOAL_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct shoal_sha256 {
	uint32_t h[8];
	uint64_t total;
	uint8_t block[64];
	size_t used;
};

void shoal_sha256_init(struct shoal_sha256 *c);
void shoal_sha256_update(struct shoal_sha256 *c, const void *data, size_t len);
void shoal_sha256_final(struct shoal_sha256 *c, uint8_t out[32]);
/* One call: digest of data. */
void shoal_sha256(const void *data, size_t len, uint8_t out[32]);

#endif
