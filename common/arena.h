/* arena.h - a bump allocator for memory that lives exactly as long as one
 * batch (a message being built).  Blocks never move, so pointers into the
 * arena stay valid until reset. */
#ifndef SHOAL_ARENA_H
#define SHOAL_ARENA_H

#include <stddef.h>

struct shoal_arena_block;

struct shoal_arena {
	struct shoal_arena_block *head;	/* newest block first */
	size_t used;			/* bytes handed out since reset */
};

void shoal_arena_init(struct shoal_arena *a);
/* n bytes aligned to 16, or NULL on allocation failure. */
void *shoal_arena_alloc(struct shoal_arena *a, size_t n);
char *shoal_arena_strdup(struct shoal_arena *a, const char *s);
void *shoal_arena_memdup(struct shoal_arena *a, const void *p, size_t n);
/* Forgets everything; keeps one block for reuse. */
void shoal_arena_reset(struct shoal_arena *a);
void shoal_arena_free(struct shoal_arena *a);

#endif
