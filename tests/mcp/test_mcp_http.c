/* test_mcp_http.c - the MCP client over Streamable HTTP against a real
 * server: @modelcontextprotocol/server-everything (streamableHttp mode),
 * installed from npm by the fixture, on a free port of 127.0.0.1.  It
 * answers POSTs with SSE streams and hands out an Mcp-Session-Id that it
 * requires on every later request, so each passing call also proves the
 * session and protocol headers.  The loop is the harness's: a poll() on
 * the pool's sockets, then perform.  Exit 77 when node is missing. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agents/mcp.h"
#include "common/util.h"
#include "mcp_got.h"
#include "test.h"

#ifndef SHOAL_MCP_SERVERS
#define SHOAL_MCP_SERVERS "tests/mcp/node_modules"
#endif

#define EVERYTHING SHOAL_MCP_SERVERS "/@modelcontextprotocol/server-everything/dist/index.js"
#define SECRET "sekret-token-3f9a1c"

static pid_t server_pid;
static int port;
static char url[128];
static struct shoal_mcp_http_pool *pool;

/* The harness's loop, until g's callback ran or ms passed. */
static void run_until(struct got *g, int ms)
{
	int64_t until = shoal_now_ms() + ms;

	while (g->ran == 0 && shoal_now_ms() < until) {
		struct curl_waitfd w[64];
		struct pollfd p[64];
		size_t n, i;
		long t;

		shoal_mcp_http_pool_flush(pool, shoal_now_ms());
		n = shoal_mcp_http_pool_fds(pool, w, 64);
		n = n < 64 ? n : 64;
		for (i = 0; i < n; i++)
			p[i] = (struct pollfd){ w[i].fd, w[i].events, 0 };
		t = shoal_mcp_http_pool_timeout(pool, shoal_now_ms());
		(void)poll(p, (nfds_t)n, t < 0 || t > 50 ? 50 : (int)t);
		for (i = 0; i < n; i++)
			w[i].revents = p[i].revents;
		CHECK_EQ_INT(shoal_mcp_http_pool_perform(pool, w, n, shoal_now_ms()),
			     SHOAL_OK);
	}
}

/* ---- the server ------------------------------------------------------- */

static int free_port(void)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	int s = socket(AF_INET, SOCK_STREAM, 0), p = -1;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s >= 0 && bind(s, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(s, (struct sockaddr *)&a, &len) == 0)
		p = ntohs(a.sin_port);
	if (s >= 0)
		close(s);
	return p;
}

static int accepts(int p)
{
	struct sockaddr_in a;
	int s = socket(AF_INET, SOCK_STREAM, 0), ok;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)p);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = s >= 0 && connect(s, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (s >= 0)
		close(s);
	return ok;
}

static int start_server(void)
{
	char portenv[16];
	int64_t until;

	port = free_port();
	if (port <= 0)
		return -1;
	snprintf(portenv, sizeof(portenv), "%d", port);
	server_pid = fork();
	if (server_pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0 && getenv("SHOAL_TEST_VERBOSE") == NULL)
			dup2(fd, 2);
		setenv("PORT", portenv, 1);
		execlp("node", "node", EVERYTHING, "streamableHttp", (char *)NULL);
		_exit(127);
	}
	until = shoal_now_ms() + 20000;
	while (shoal_now_ms() < until && !accepts(port))
		usleep(50000);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/mcp", port);
	return accepts(port) ? 0 : -1;
}

/* ---- a client and its transport --------------------------------------- */

struct conn {
	struct shoal_mcp_client *c;
	struct shoal_mcp_http *h;
};

static const struct shoal_mcp_header headers[] = {
	{ "X-Api-Key", SECRET },
	{ "Authorization", "Bearer " SECRET "-bearer" },
};

static int connect_to(struct conn *k, const char *to, uint64_t timeout_ms)
{
	struct shoal_mcp_client_conf conf = { .server = "everything",
					      .timeout_ms = timeout_ms };
	struct shoal_mcp_http_conf hc = { .url = to, .headers = headers,
					  .nheaders = 2 };
	struct shoal_error err;

	if (shoal_mcp_client_new(&conf, &k->c, &err) != SHOAL_OK ||
	    shoal_mcp_http_new(pool, &hc, k->c, &k->h, &err) != SHOAL_OK) {
		fprintf(stderr, "connect: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static void disconnect(struct conn *k)
{
	shoal_mcp_http_free(k->h);
	shoal_mcp_client_free(k->c);
}

static void call(struct conn *k, const char *tool, const char *args_json,
		 uint64_t timeout_ms, struct got *g, int wait_ms)
{
	struct shoal_error err;
	json_t *args = json_loads(args_json, 0, NULL);

	memset(g, 0, sizeof(*g));
	CHECK_EQ_INT(shoal_mcp_call_tool(k->c, tool, args, timeout_ms, on_call, g,
					 NULL, &err), SHOAL_OK);
	json_decref(args);
	run_until(g, wait_ms);
	CHECK_EQ_INT(g->ran, 1);
}

static int has_tool(const json_t *tools, const char *name)
{
	const json_t *t;
	size_t i;

	json_array_foreach(tools, i, t)
		if (strcmp(json_string_value(json_object_get(t, "name")), name) == 0)
			return 1;
	return 0;
}

/* ---- the tests -------------------------------------------------------- */

static struct conn K;

static void http_lists_the_tools_of_server_everything(void)
{
	struct shoal_error err;
	struct got g;
	json_t *defs;

	memset(&g, 0, sizeof(g));
	CHECK_EQ_INT(shoal_mcp_list_tools(K.c, on_list, &g, &err),
		     SHOAL_OK);
	run_until(&g, 20000);
	CHECK_EQ_INT(g.ran, 1);
	CHECK_EQ_INT(g.code, SHOAL_OK);
	if (g.code != SHOAL_OK)
		fprintf(stderr, "  list: %s\n", g.text);
	CHECK_STR(shoal_mcp_client_protocol(K.c), SHOAL_MCP_PROTOCOL_VERSION);
	CHECK(has_tool(shoal_mcp_tools(K.c), "echo"));
	CHECK(has_tool(shoal_mcp_tools(K.c), "add"));
	CHECK(has_tool(shoal_mcp_tools(K.c), "longRunningOperation"));
	CHECK(!shoal_mcp_tools_stale(K.c));
	CHECK_STR(json_string_value(json_object_get(shoal_mcp_server_info(K.c), "name")),
		  "example-servers/everything");
	defs = shoal_mcp_tool_defs("everything", shoal_mcp_tools(K.c), NULL, 0, NULL);
	CHECK(has_tool(defs, "everything__echo"));
	CHECK(json_is_object(json_object_get(json_array_get(defs, 0), "parameters")));
	json_decref(defs);
}

static void http_calls_a_tool(void)
{
	struct got g;

	call(&K, "echo", "{\"message\":\"hello over http\"}", 0, &g, 20000);
	CHECK_EQ_INT(g.code, SHOAL_OK);
	CHECK_EQ_INT(g.is_error, 0);
	CHECK_STR(g.text, "Echo: hello over http");
	call(&K, "add", "{\"a\":2,\"b\":40}", 0, &g, 20000);
	CHECK_STR(g.text, "The sum of 2 and 40 is 42.");
	call(&K, "getTinyImage", "{}", 0, &g, 20000);
	CHECK(strstr(g.text, "This is a tiny image:\n[image: image/png, ") != NULL);
	call(&K, "structuredContent", "{\"location\":\"Lisbon\"}", 0, &g, 20000);
	CHECK(strstr(g.text, "\"temperature\"") != NULL);
}

static void http_error_results_reach_the_model_as_errors(void)
{
	struct got g;

	call(&K, "add", "{\"a\":\"two\",\"b\":1}", 0, &g, 20000);
	CHECK_EQ_INT(g.code, SHOAL_EINVAL);
	CHECK_EQ_INT(g.is_error, 1);
	CHECK(strstr(g.text, "tools/call add failed") != NULL);
	CHECK(strstr(g.text, "Expected number") != NULL);
	call(&K, "no_such_tool", "{}", 0, &g, 20000);
	CHECK_EQ_INT(g.is_error, 1);
	CHECK(strstr(g.text, "Unknown tool: no_such_tool") != NULL);
}

static void http_slow_tool_hits_the_timeout_and_the_session_goes_on(void)
{
	int64_t t0 = shoal_now_ms();
	struct got g;

	call(&K, "longRunningOperation", "{\"duration\":8,\"steps\":4}", 1000, &g, 10000);
	CHECK_EQ_INT(g.code, SHOAL_ETIMEDOUT);
	CHECK(strstr(g.text, "did not answer tools/call longRunningOperation in 1 s")
	      != NULL);
	CHECK(shoal_now_ms() - t0 < 5000);
	/* its transfer is dropped, a cancellation went out, and the
	 * session still serves calls */
	call(&K, "echo", "{\"message\":\"still here\"}", 0, &g, 20000);
	CHECK_STR(g.text, "Echo: still here");
	CHECK(shoal_mcp_http_pool_active(pool) == 0);
}

static void http_errors_never_show_header_values(void)
{
	char bad[192];
	struct conn k;
	struct got g;

	/* a server that echoes what it got: express's 404 page quotes the
	 * path, which here holds the secret */
	snprintf(bad, sizeof(bad), "http://127.0.0.1:%d/echo/%s", port, SECRET);
	CHECK_EQ_INT(connect_to(&k, bad, 10000), 0);
	call(&k, "echo", "{\"message\":\"x\"}", 0, &g, 20000);
	CHECK_EQ_INT(g.code, SHOAL_EIO);
	CHECK(strstr(g.text, "HTTP status 404") != NULL);
	CHECK(strstr(g.text, "***") != NULL);
	CHECK(strstr(g.text, SECRET) == NULL);
	fprintf(stderr, "  %s\n", g.text);
	disconnect(&k);
}

static void http_connection_refused_fails_cleanly(void)
{
	char closed[96];
	struct conn k;
	struct got g;

	snprintf(closed, sizeof(closed), "http://127.0.0.1:%d/mcp", free_port());
	CHECK_EQ_INT(connect_to(&k, closed, 10000), 0);
	call(&k, "echo", "{}", 0, &g, 20000);
	CHECK_EQ_INT(g.code, SHOAL_EIO);
	CHECK(strstr(g.text, "HTTP: ") != NULL);
	CHECK_EQ_INT(shoal_mcp_client_state(k.c), SHOAL_MCP_NEW);
	disconnect(&k);
}

static void http_config_is_checked(void)
{
	struct shoal_mcp_header crlf = { "X-Key", "abc\r\nInjected: 1" };
	struct shoal_mcp_http_conf hc = { .url = "ftp://x/", .headers = NULL };
	struct shoal_mcp_http *h = NULL;
	struct shoal_error err;

	CHECK_EQ_INT(shoal_mcp_http_new(pool, &hc, K.c, &h, &err), SHOAL_ECONFIG);
	hc.url = url;
	hc.headers = &crlf;
	hc.nheaders = 1;
	CHECK_EQ_INT(shoal_mcp_http_new(pool, &hc, K.c, &h, &err), SHOAL_ECONFIG);
	CHECK(strstr(err.msg, "abc") == NULL);
	CHECK(h == NULL);
}

static int node_installed(void)
{
	return system("node --version >/dev/null 2>&1") == 0 &&
	       access(EVERYTHING, R_OK) == 0;
}

int main(void)
{
	struct shoal_error err;

	signal(SIGPIPE, SIG_IGN);
	if (!node_installed()) {
		fprintf(stderr, "node or %s missing: skipped\n", EVERYTHING);
		return 77;
	}
	if (start_server() != 0) {
		fprintf(stderr, "server-everything did not start on port %d\n", port);
		return 1;
	}
	CHECK_EQ_INT(shoal_mcp_http_pool_new(&pool, &err), SHOAL_OK);
	CHECK_EQ_INT(connect_to(&K, url, 20000), 0);
	RUN(http_lists_the_tools_of_server_everything);
	RUN(http_calls_a_tool);
	RUN(http_error_results_reach_the_model_as_errors);
	RUN(http_slow_tool_hits_the_timeout_and_the_session_goes_on);
	RUN(http_errors_never_show_header_values);
	RUN(http_connection_refused_fails_cleanly);
	RUN(http_config_is_checked);
	disconnect(&K);
	shoal_mcp_http_pool_free(pool);
	kill(server_pid, SIGKILL);
	waitpid(server_pid, NULL, 0);
	return test_done();
}
