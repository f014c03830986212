/* mcp_got.h - what an MCP client callback reported, for the MCP tests
 * (test_mcp_http.c, test_mcp_stdio.c): pass a struct got as the callback's
 * arg, then read how many times it ran, its code and its text. */
#ifndef SHOAL_TEST_MCP_GOT_H
#define SHOAL_TEST_MCP_GOT_H

#include "agents/mcp.h"
#include "common/util.h"

struct got {
	int ran;
	int code;
	int is_error;
	char text[16384];
};

/* shoal_mcp_call_tool's callback: the result's code, error flag and text. */
static inline void on_call(struct shoal_mcp_client *c,
			   const struct shoal_mcp_call_result *r, void *arg)
{
	struct got *g = arg;

	(void)c;
	g->ran++;
	g->code = r->code;
	g->is_error = r->is_error;
	shoal_strlcpy(g->text, r->text, sizeof(g->text));
}

/* shoal_mcp_list_tools' callback: its code, and the error as text. */
static inline void on_list(struct shoal_mcp_client *c, int code, const char *error,
			   void *arg)
{
	struct got *g = arg;

	(void)c;
	g->ran++;
	g->code = code;
	shoal_strlcpy(g->text, error != NULL ? error : "", sizeof(g->text));
}

#endif
