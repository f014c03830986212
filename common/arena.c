/* arena.c - bump allocator (see arena.h). */
#include "common/arena.h"

#include <stdlib.h>
#include <string.h>

#define ARENA_BLOCK (64 * 1024)

struct shoal_arena_block {
	struct shoal_arena_block *next;
	size_t size;
	size_t used;
	_Alignas(16) unsigned char data[];
};

void shoal_arena_init(struct shoal_arena *a)
{
	a->head = NULL;
	a->used = 0;
}

void *shoal_arena_alloc(struct shoal_arena *a, size_t n)
{
	struct shoal_arena_block *b = a->head;
	size_t need = (n + 15) & ~(size_t)15;
	void *p;

	if (need < n)
		return NULL;
	if (b == NULL || b->size - b->used < need) {
		size_t size = need > ARENA_BLOCK ? need : ARENA_BLOCK;

		b = malloc(sizeof(*b) + size);
		if (b == NULL)
			return NULL;
		b->size = size;
		b->used = 0;
		b->next = a->head;
		a->head = b;
	}
	p = b->data + b->used;
	b->used += need;
	a->used += need;
	return p;
}

void *shoal_arena_memdup(struct shoal_arena *a, const void *p, size_t n)
{
	char *d = shoal_arena_alloc(a, n + 1);

	if (d == NULL)
		return NULL;
	if (n > 0)
		memcpy(d, p, n);
	d[n] = '\0';
	return d;
}

char *shoal_arena_strdup(struct shoal_arena *a, const char *s)
{
	return shoal_arena_memdup(a, s, strlen(s));
}

void shoal_arena_reset(struct shoal_arena *a)
{
	struct shoal_arena_block *b = a->head;

	if (b == NULL)
		return;
	while (b->next != NULL) {
		struct shoal_arena_block *next = b->next;

		b->next = next->next;
		free(next);
	}
	/* Keep the newest block only if it is the ordinary size. */
	if (b->size > ARENA_BLOCK) {
		free(b);
		a->head = NULL;
	} else {
		b->used = 0;
	}
	a->used = 0;
}

void shoal_arena_free(struct shoal_arena *a)
{
	while (a->head != NULL) {
		struct shoal_arena_block *next = a->head->next;

		free(a->head);
		a->head = next;
	}
	a->used = 0;
}
