/* u64map.h - open-addressing hash map from non-zero uint64 keys to
 * pointers (the harness's lease table).  Grows at half load; deletions use
 * backward-shift, so there are no tombstones and lookups stay short. */
#ifndef SHOAL_U64MAP_H
#define SHOAL_U64MAP_H

#include <stddef.h>
#include <stdint.h>

struct shoal_u64map {
	uint64_t *keys;		/* 0 = empty slot */
	void **vals;
	size_t cap;		/* power of two */
	size_t len;
};

void shoal_u64map_init(struct shoal_u64map *m);
/* Inserts or replaces; key must be non-zero.  0 or SHOAL_ENOMEM. */
int shoal_u64map_put(struct shoal_u64map *m, uint64_t key, void *val);
void *shoal_u64map_get(const struct shoal_u64map *m, uint64_t key);
/* Removes key; returns its value or NULL. */
void *shoal_u64map_del(struct shoal_u64map *m, uint64_t key);
void shoal_u64map_free(struct shoal_u64map *m);

/* Iteration: for (i = 0; i < m->cap; i++) if (m->keys[i]) ... */

#endif
