/* u64map.c - open-addressing uint64 -> pointer map (see u64map.h). */
#include "common/u64map.h"

#include <stdlib.h>

#include "common/err.h"

static size_t slot_of(uint64_t key, size_t cap)
{
	key ^= key >> 33;
	key *= 0xff51afd7ed558ccdULL;
	key ^= key >> 33;
	return (size_t)key & (cap - 1);
}

void shoal_u64map_init(struct shoal_u64map *m)
{
	m->keys = NULL;
	m->vals = NULL;
	m->cap = 0;
	m->len = 0;
}

static int grow(struct shoal_u64map *m)
{
	size_t cap = m->cap ? m->cap * 2 : 64, i;
	uint64_t *keys = calloc(cap, sizeof(*keys));
	void **vals = calloc(cap, sizeof(*vals));

	if (keys == NULL || vals == NULL) {
		free(keys);
		free(vals);
		return SHOAL_ENOMEM;
	}
	for (i = 0; i < m->cap; i++) {
		size_t j;

		if (m->keys[i] == 0)
			continue;
		j = slot_of(m->keys[i], cap);
		while (keys[j] != 0)
			j = (j + 1) & (cap - 1);
		keys[j] = m->keys[i];
		vals[j] = m->vals[i];
	}
	free(m->keys);
	free(m->vals);
	m->keys = keys;
	m->vals = vals;
	m->cap = cap;
	return SHOAL_OK;
}

int shoal_u64map_put(struct shoal_u64map *m, uint64_t key, void *val)
{
	size_t i;

	if ((m->len + 1) * 2 > m->cap && grow(m) != SHOAL_OK)
		return SHOAL_ENOMEM;
	i = slot_of(key, m->cap);
	while (m->keys[i] != 0 && m->keys[i] != key)
		i = (i + 1) & (m->cap - 1);
	if (m->keys[i] == 0)
		m->len++;
	m->keys[i] = key;
	m->vals[i] = val;
	return SHOAL_OK;
}

void *shoal_u64map_get(const struct shoal_u64map *m, uint64_t key)
{
	size_t i;

	if (m->cap == 0 || key == 0)
		return NULL;
	i = slot_of(key, m->cap);
	while (m->keys[i] != 0) {
		if (m->keys[i] == key)
			return m->vals[i];
		i = (i + 1) & (m->cap - 1);
	}
	return NULL;
}

void *shoal_u64map_del(struct shoal_u64map *m, uint64_t key)
{
	size_t i, j;
	void *val;

	if (m->cap == 0 || key == 0)
		return NULL;
	i = slot_of(key, m->cap);
	while (m->keys[i] != key) {
		if (m->keys[i] == 0)
			return NULL;
		i = (i + 1) & (m->cap - 1);
	}
	val = m->vals[i];
	/* Backward-shift: pull later entries of the cluster into the hole. */
	j = i;
	for (;;) {
		size_t home;

		j = (j + 1) & (m->cap - 1);
		if (m->keys[j] == 0)
			break;
		home = slot_of(m->keys[j], m->cap);
		if (((j - home) & (m->cap - 1)) >= ((j - i) & (m->cap - 1))) {
			m->keys[i] = m->keys[j];
			m->vals[i] = m->vals[j];
			i = j;
		}
	}
	m->keys[i] = 0;
	m->vals[i] = NULL;
	m->len--;
	return val;
}

void shoal_u64map_free(struct shoal_u64map *m)
{
	free(m->keys);
	free(m->vals);
	shoal_u64map_init(m);
}
