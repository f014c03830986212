/* test_mcp_stdio.c - MCP stdio servers inside a real worker's session
 * sandbox.  A minimal harness (mini_harness.c) drives `shoal worker`; the
 * MCP client core (agents/mcp.h) speaks to real servers installed from
 * npm (@modelcontextprotocol/server-filesystem and server-everything)
 * through `mcp` ops, the way the harness does: its lines are an op's
 * data, the op result's out is fed back.  Then misbehaving "servers" (sh
 * scripts) through raw ops: garbage, wrong ids, huge lines, death, a
 * missing command.  The sandbox shows node only the npm folder
 * (readonly_paths) and the workspace: a host file outside them is not
 * there, whatever the server would allow.  Exit 77 when node is missing.
 * SHOAL_TEST_BACKEND=none runs only the sh servers, without namespaces. */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agents/mcp.h"
#include "common/buf.h"
#include "common/util.h"
#include "mini_harness.h"
#include "mcp_got.h"
#include "test.h"

#ifndef SHOAL_BIN
#define SHOAL_BIN "shoal"
#endif
#ifndef SHOAL_MCP_SERVERS
#define SHOAL_MCP_SERVERS "tests/mcp/node_modules"
#endif

#define FS_JS SHOAL_MCP_SERVERS "/@modelcontextprotocol/server-filesystem/dist/index.js"
#define EVERYTHING_JS SHOAL_MCP_SERVERS "/@modelcontextprotocol/server-everything/dist/index.js"
#define LEASE 3001
#define SECRET_NAME "SHOAL_TEST_HARNESS_SECRET"
#define SECRET_VALUE "hs-mcp-5ec7e7-n0t-f0r-5erver5"
#define WAIT_MS 30000

static char node[PATH_MAX];		/* node, as found in PATH */
static char mcp_dir[PATH_MAX];		/* tests/mcp: the npm folder's parent */
static char marker[64];			/* in every sh server's command line */
static int backend_none;		/* SHOAL_TEST_BACKEND=none: no
					 * namespaces, no /workspace: only
					 * the sh servers */
static const char *ro[2];
static struct shoal_wire_kv env[] = {
	{ "PATH", "/usr/local/bin:/usr/bin:/bin" },
};
static const struct shoal_wire_file files[] = {
	{ "notes/hello.txt", { "hello from the workspace\n", 25 }, 0644 },
};

/* ---- a client speaking through mcp ops --------------------------------- */

struct sconn {
	struct shoal_mcp_client *c;
	const char *server;
	const char **argv;
	uint32_t argc;
};

/* One mcp op carrying data; waits for its result. */
static const struct shoal_wire_op_result *mcp_op(const char *server,
						 const char **argv, uint32_t argc,
						 const char *data, size_t len,
						 uint64_t timeout_ms,
						 uint64_t max_out)
{
	struct shoal_wire_op *op = mh_op(LEASE, SHOAL_OP_MCP);
	uint64_t id = op->op_id;

	op->server = server;
	op->argv = argv;
	op->argc = argc;
	op->data.data = data;
	op->data.len = len;
	op->timeout_ms = timeout_ms;
	op->max_output = max_out;
	mh_pump(0);
	return mh_wait_op(id, (int)timeout_ms + WAIT_MS);
}

/* The harness's side of a stdio server: sends what the client queued as
 * one op, feeds the result back, until g's callback ran. */
static void converse(struct sconn *k, struct got *g)
{
	int64_t until = shoal_now_ms() + 2 * WAIT_MS;

	while (g->ran == 0 && shoal_now_ms() < until) {
		const struct shoal_wire_op_result *r;
		int64_t now = shoal_now_ms(), d;
		struct shoal_buf data;

		shoal_buf_init(&data, 0);
		if (shoal_mcp_client_take_lines(k->c, &data, now) <= 0) {
			shoal_buf_free(&data);
			break;		/* nothing to send: it cannot go on */
		}
		d = shoal_mcp_client_deadline(k->c);
		r = mcp_op(k->server, k->argv, k->argc, data.data, data.len,
			   d == INT64_MAX ? 5000 : (uint64_t)(d - now), 0);
		if (r != NULL && r->out.len > 0)
			shoal_mcp_client_feed(k->c, r->out.data, r->out.len, shoal_now_ms());
		if (r != NULL && r->status == SHOAL_STATUS_TIMEOUT)
			shoal_mcp_client_expire_sent(k->c, shoal_now_ms());
		else if (r == NULL || r->status != SHOAL_STATUS_OK)
			shoal_mcp_client_transport_error(k->c, SHOAL_EIO, r != NULL &&
							 r->error ? r->error : "no op result");
		shoal_buf_free(&data);
	}
	/* what the answers queued (initialized, cancellations) goes too */
	if (g->ran) {
		struct shoal_buf data;

		shoal_buf_init(&data, 0);
		if (shoal_mcp_client_take_lines(k->c, &data, shoal_now_ms()) > 0)
			(void)mcp_op(k->server, k->argv, k->argc, data.data, data.len,
				     5000, 0);
		shoal_buf_free(&data);
	}
}

static void list(struct sconn *k, struct got *g)
{
	struct shoal_error err;

	memset(g, 0, sizeof(*g));
	CHECK_EQ_INT(shoal_mcp_list_tools(k->c, on_list, g, &err),
		     SHOAL_OK);
	converse(k, g);
	CHECK_EQ_INT(g->ran, 1);
}

static void call(struct sconn *k, const char *tool, const char *args_json,
		 uint64_t timeout_ms, struct got *g)
{
	struct shoal_error err;
	json_t *args = json_loads(args_json, 0, NULL);

	memset(g, 0, sizeof(*g));
	CHECK(args != NULL);
	CHECK_EQ_INT(shoal_mcp_call_tool(k->c, tool, args, timeout_ms, on_call, g,
					 NULL, &err), SHOAL_OK);
	json_decref(args);
	converse(k, g);
	CHECK_EQ_INT(g->ran, 1);
}

static void sconn_open(struct sconn *k, const char *server, const char **argv,
		       uint32_t argc)
{
	struct shoal_mcp_client_conf conf = { .server = server, .timeout_ms = 20000 };
	struct shoal_error err;

	k->server = server;
	k->argv = argv;
	k->argc = argc;
	CHECK_EQ_INT(shoal_mcp_client_new(&conf, &k->c, &err), SHOAL_OK);
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

/* ---- the tests: real servers ------------------------------------------ */

static const char *fs_argv[] = { node, FS_JS, "/workspace" };
static const char *everything_argv[] = { node, EVERYTHING_JS, "stdio" };
static struct sconn fs, everything;

static void worker_says_it_serves_mcp(void)
{
	int64_t until = shoal_now_ms() + 10000;

	while (!mh_hello_mcp() && shoal_now_ms() < until)
		mh_pump(20);
	CHECK_EQ_INT(mh_hello_sessions(), 1);
	CHECK_EQ_INT(mh_hello_mcp(), 1);
}

static void filesystem_server_lists_its_tools(void)
{
	struct got g;

	list(&fs, &g);
	CHECK_EQ_INT(g.code, SHOAL_OK);
	if (g.code != SHOAL_OK)
		fprintf(stderr, "  %s\n", g.text);
	CHECK(has_tool(shoal_mcp_tools(fs.c), "read_text_file"));
	CHECK(has_tool(shoal_mcp_tools(fs.c), "write_file"));
	CHECK(has_tool(shoal_mcp_tools(fs.c), "list_directory"));
	CHECK_STR(shoal_mcp_client_protocol(fs.c), "2025-06-18");
}

static void filesystem_server_reads_writes_and_lists_the_workspace(void)
{
	const struct shoal_wire_op_result *r;
	struct shoal_wire_op *op;
	uint64_t id;
	struct got g;

	call(&fs, "read_text_file", "{\"path\":\"/workspace/notes/hello.txt\"}", 0, &g);
	CHECK_EQ_INT(g.code, SHOAL_OK);
	CHECK_STR(g.text, "hello from the workspace\n");
	call(&fs, "create_directory", "{\"path\":\"/workspace/out\"}", 0, &g);
	CHECK_EQ_INT(g.is_error, 0);
	call(&fs, "write_file", "{\"path\":\"/workspace/out/new.txt\","
	     "\"content\":\"written by MCP\\n\"}", 0, &g);
	CHECK_EQ_INT(g.is_error, 0);
	if (g.is_error)
		fprintf(stderr, "  write_file: %s\n", g.text);
	/* the server wrote into the session's own workspace */
	op = mh_op(LEASE, SHOAL_OP_READ);
	op->path = "out/new.txt";
	id = op->op_id;
	mh_pump(0);
	r = mh_wait_op(id, WAIT_MS);
	CHECK(r != NULL && r->status == SHOAL_STATUS_OK && r->out.data != NULL &&
	      strcmp(r->out.data, "written by MCP\n") == 0);
	call(&fs, "list_directory", "{\"path\":\"/workspace\"}", 0, &g);
	CHECK(strstr(g.text, "[DIR] notes") != NULL);
	CHECK(strstr(g.text, "[DIR] out") != NULL);
}

static void filesystem_server_refuses_paths_outside_its_folder(void)
{
	struct got g;

	call(&fs, "read_text_file", "{\"path\":\"/etc/passwd\"}", 0, &g);
	CHECK_EQ_INT(g.code, SHOAL_OK);
	CHECK_EQ_INT(g.is_error, 1);
	CHECK(strstr(g.text, "Access denied") != NULL);
}

/* A second filesystem server allowed /etc and the npm folder's parent:
 * the server itself would read anything there, but the sandbox holds
 * neither the host's /etc/shadow nor the files next to node_modules. */
static void host_files_outside_the_workspace_are_not_in_the_sandbox(void)
{
	static const char *wide_argv[] = { node, FS_JS, "/etc", mcp_dir };
	char path[PATH_MAX + 64], args[PATH_MAX + 96];
	struct sconn wide;
	struct got g;

	snprintf(path, sizeof(path), "%s/package.json", mcp_dir);
	CHECK(access(path, R_OK) == 0);		/* it is on the host */
	CHECK(access("/etc/shadow", F_OK) == 0);
	sconn_open(&wide, "wide", wide_argv, 4);
	snprintf(args, sizeof(args), "{\"path\":\"%s\"}", path);
	call(&wide, "read_text_file", args, 0, &g);
	CHECK_EQ_INT(g.is_error, 1);
	CHECK(strstr(g.text, "ENOENT") != NULL);
	fprintf(stderr, "  %s\n", g.text);
	call(&wide, "read_text_file", "{\"path\":\"/etc/shadow\"}", 0, &g);
	CHECK_EQ_INT(g.is_error, 1);
	CHECK(strstr(g.text, "ENOENT") != NULL);
	/* /etc/passwd in there is the sandbox's own */
	call(&wide, "read_text_file", "{\"path\":\"/etc/passwd\"}", 0, &g);
	CHECK_EQ_INT(g.is_error, 0);
	CHECK(strstr(g.text, "sandbox:x:1000:1000") != NULL);
	CHECK(strstr(g.text, "root:x:0:0") == NULL);
	shoal_mcp_client_free(wide.c);
}

static void everything_server_calls_errors_and_timeouts(void)
{
	struct got g;

	list(&everything, &g);
	CHECK_EQ_INT(g.code, SHOAL_OK);
	CHECK(has_tool(shoal_mcp_tools(everything.c), "longRunningOperation"));
	call(&everything, "echo", "{\"message\":\"hi from the sandbox\"}", 0, &g);
	CHECK_STR(g.text, "Echo: hi from the sandbox");
	call(&everything, "add", "{\"a\":\"one\",\"b\":2}", 0, &g);
	CHECK_EQ_INT(g.code, SHOAL_EINVAL);
	CHECK_EQ_INT(g.is_error, 1);
	CHECK(strstr(g.text, "Expected number") != NULL);
	/* a slow tool: the op times out, the call fails, the server lives */
	call(&everything, "longRunningOperation", "{\"duration\":10,\"steps\":5}",
	     1500, &g);
	CHECK_EQ_INT(g.code, SHOAL_ETIMEDOUT);
	CHECK(strstr(g.text, "did not answer tools/call longRunningOperation in 1.5 s")
	      != NULL || strstr(g.text, "1500 ms") != NULL);
	call(&everything, "echo", "{\"message\":\"after the timeout\"}", 0, &g);
	CHECK_STR(g.text, "Echo: after the timeout");
}

/* A stdio server gets the session's environment and nothing of the
 * worker's (which holds a harness secret here, and ctest's fake key). */
static void servers_see_only_the_session_environment(void)
{
	struct got g;

	call(&everything, "printEnv", "{}", 0, &g);
	CHECK_EQ_INT(g.is_error, 0);
	CHECK(strstr(g.text, "\"PATH\": \"/usr/local/bin:/usr/bin:/bin\"") != NULL);
	CHECK(strstr(g.text, SECRET_VALUE) == NULL);
	CHECK(strstr(g.text, SECRET_NAME) == NULL);
	CHECK(strstr(g.text, "OPENAI_API_KEY") == NULL);
	CHECK(strstr(g.text, "sk-ctest") == NULL);
}

/* An exec op between calls kills what the command started, not the
 * session's MCP servers. */
static void servers_outlive_commands_between_ops(void)
{
	const struct shoal_wire_op_result *r;
	struct shoal_wire_op *op = mh_op(LEASE, SHOAL_OP_EXEC);
	uint64_t id = op->op_id;
	struct got g;

	op->command = "sleep 30 & echo started";
	mh_pump(0);
	r = mh_wait_op(id, WAIT_MS);
	CHECK(r != NULL && r->status == SHOAL_STATUS_OK);
	call(&everything, "echo", "{\"message\":\"still up\"}", 0, &g);
	CHECK_STR(g.text, "Echo: still up");
	call(&fs, "list_directory", "{\"path\":\"/workspace/notes\"}", 0, &g);
	CHECK(strstr(g.text, "[FILE] hello.txt") != NULL);
}

/* ---- the tests: misbehaving servers, raw ops -------------------------- */

static char sh_garbage[256], sh_wrong_id[256], sh_huge[320], sh_dies[160];
static const char *garbage_argv[] = { "/bin/sh", "-c", sh_garbage };
static const char *wrong_id_argv[] = { "/bin/sh", "-c", sh_wrong_id };
static const char *huge_argv[] = { "/bin/sh", "-c", sh_huge };
static const char *dies_argv[] = { "/bin/sh", "-c", sh_dies };
static const char ping1[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n";

static void fake_servers(void)
{
	snprintf(sh_garbage, sizeof(sh_garbage),
		 "echo 'Server starting...'; read l; echo '{oops'; "
		 "echo '{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}'; exec sleep 60 # %s",
		 marker);
	snprintf(sh_wrong_id, sizeof(sh_wrong_id),
		 "while read l; do echo '{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}'; "
		 "done # %s", marker);
	snprintf(sh_huge, sizeof(sh_huge),
		 "read l; head -c 2000000 /dev/zero | tr '\\0' a; echo; "
		 "while read l; do echo '{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}'; "
		 "done # %s", marker);
	snprintf(sh_dies, sizeof(sh_dies),
		 "echo 'fatal: no config at /workspace/mcp.json' >&2; exit 3 # %s",
		 marker);
}

static int out_is(const struct shoal_wire_op_result *r, const char *want)
{
	int ok = r != NULL && r->out.len == strlen(want) &&
		 memcmp(r->out.data, want, r->out.len) == 0;

	if (!ok)
		fprintf(stderr, "  out \"%.*s\", expected \"%s\"\n",
			r != NULL ? (int)r->out.len : 0,
			r != NULL && r->out.data ? r->out.data : "", want);
	return ok;
}

static int error_has(const struct shoal_wire_op_result *r, const char *part)
{
	int ok = r != NULL && r->error != NULL && strstr(r->error, part) != NULL;

	if (!ok)
		fprintf(stderr, "  error \"%s\" lacks \"%s\"\n",
			r != NULL && r->error ? r->error : "(none)", part);
	return ok;
}

static void garbage_on_stdout_goes_to_the_harness(void)
{
	const struct shoal_wire_op_result *r;

	r = mcp_op("garbage", garbage_argv, 3, ping1, strlen(ping1), 10000, 0);
	CHECK(r != NULL && r->status == SHOAL_STATUS_OK);
	CHECK(out_is(r, "Server starting...\n{oops\n"
		     "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n"));
}

static void an_answer_to_another_id_is_not_the_answer(void)
{
	const struct shoal_wire_op_result *r;

	r = mcp_op("wrongid", wrong_id_argv, 3, ping1, strlen(ping1), 700, 0);
	CHECK(r != NULL && r->status == SHOAL_STATUS_TIMEOUT);
	CHECK(out_is(r, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n"));
	CHECK(error_has(r, "MCP server wrongid did not answer 1 of 1 requests in 700 ms"));
	CHECK(r != NULL && r->run_us >= 600000);
}

static void a_huge_line_is_cut_and_skipped(void)
{
	const struct shoal_wire_op_result *r;

	r = mcp_op("huge", huge_argv, 3, ping1, strlen(ping1), 10000, 65536);
	CHECK(r != NULL && r->status == SHOAL_STATUS_LIMIT && r->truncated);
	CHECK(r != NULL && r->out.len == 0);
	CHECK(error_has(r, "MCP server huge printed more than 65536 bytes (max_out)"));
	/* the rest of that line is skipped; the server goes on */
	r = mcp_op("huge", huge_argv, 3, ping1, strlen(ping1), 10000, 65536);
	CHECK(r != NULL && r->status == SHOAL_STATUS_OK);
	CHECK(out_is(r, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n"));
}

static void a_dying_server_says_why(void)
{
	const struct shoal_wire_op_result *r;

	r = mcp_op("dies", dies_argv, 3, ping1, strlen(ping1), 10000, 0);
	CHECK(r != NULL && r->status == SHOAL_STATUS_ERROR);
	CHECK(error_has(r, "MCP server dies exited with 1 of 1 requests unanswered; "
			"its last words: fatal: no config at /workspace/mcp.json"));
	CHECK(r != NULL && r->err.data != NULL &&
	      strstr(r->err.data, "fatal: no config") != NULL);
	/* named again, it is started again (and dies again) */
	r = mcp_op("dies", dies_argv, 3, ping1, strlen(ping1), 10000, 0);
	CHECK(r != NULL && r->status == SHOAL_STATUS_ERROR);
}

/* An mcp op's env goes to its server, on top of the session's. */
static void a_server_gets_its_own_variables(void)
{
	static struct shoal_wire_kv vars[] = { { "MCP_GREETING", "hello-from-env" } };
	static const char *argv[] = { "/bin/sh", "-c", "read l; echo \"$MCP_GREETING "
				      "$PATH\"; exec sleep 60" };
	struct shoal_wire_op *op = mh_op(LEASE, SHOAL_OP_MCP);
	const struct shoal_wire_op_result *r;
	uint64_t id = op->op_id;

	op->server = "envtest";
	op->argv = argv;
	op->argc = 3;
	op->env = vars;
	op->nenv = 1;
	op->data.data = ping1;
	op->data.len = strlen(ping1);
	op->timeout_ms = 500;
	mh_pump(0);
	r = mh_wait_op(id, WAIT_MS);
	CHECK(r != NULL && r->status == SHOAL_STATUS_TIMEOUT);
	CHECK(out_is(r, "hello-from-env /usr/local/bin:/usr/bin:/bin\n"));
}

static void refused_ops_answer_at_once(void)
{
	static const char *missing_argv[] = { "no-such-mcp-server", "--stdio" };
	static const char notification[] =
		"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/roots/list_changed\"}";
	const struct shoal_wire_op_result *r;

	r = mcp_op("missing", missing_argv, 2, ping1, strlen(ping1), 10000, 0);
	CHECK(r != NULL && r->status == SHOAL_STATUS_ERROR);
	CHECK(error_has(r, "cannot start MCP server missing: command not found: "
			"no-such-mcp-server"));
	r = mcp_op("fs", fs_argv, 3, "not json\n", 9, 10000, 0);
	CHECK(r != NULL && r->status == SHOAL_STATUS_ERROR);
	CHECK(error_has(r, "data line 1 is not JSON"));
	r = mcp_op("fs", everything_argv, 3, ping1, strlen(ping1), 10000, 0);
	CHECK(r != NULL && r->status == SHOAL_STATUS_ERROR);
	CHECK(error_has(r, "MCP server fs runs another command in this session"));
	/* notifications only: written, nothing to wait for */
	r = mcp_op("fs", fs_argv, 3, notification, strlen(notification), 10000, 0);
	CHECK(r != NULL && r->status == SHOAL_STATUS_OK);
}

/* ---- the session's end ------------------------------------------------ */

/* Processes whose command line holds the marker. */
static int marked_processes(void)
{
	struct dirent *e;
	DIR *d = opendir("/proc");
	int n = 0;

	while (d != NULL && (e = readdir(d)) != NULL) {
		char path[300], buf[4096];
		ssize_t len, i;
		int fd;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		len = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		for (i = 0; i < len; i++)
			if (buf[i] == '\0')
				buf[i] = ' ';
		buf[len > 0 ? len : 0] = '\0';
		n += strstr(buf, marker) != NULL;
	}
	if (d != NULL)
		closedir(d);
	return n;
}

static void closing_the_session_ends_its_servers(void)
{
	const struct shoal_wire_result *res;
	int64_t until;
	uint64_t id;

	CHECK(marked_processes() >= 2);	/* garbage, wrongid, huge */
	id = mh_op(LEASE, SHOAL_OP_CLOSE)->op_id;
	mh_pump(0);
	CHECK(mh_wait_op(id, WAIT_MS) != NULL);
	res = mh_wait_result(LEASE, WAIT_MS);
	CHECK(res != NULL && res->status == SHOAL_STATUS_OK);
	until = shoal_now_ms() + 5000;
	while (marked_processes() > 0 && shoal_now_ms() < until)
		mh_pump(50);
	CHECK_EQ_INT(marked_processes(), 0);
}

/* ---- set-up ----------------------------------------------------------- */

static int find_node(void)
{
	const char *path = getenv("PATH");
	char *copy, *dir, *save = NULL;
	int found = 0;

	if (path == NULL)
		return 0;
	copy = shoal_strdup(path);
	for (dir = copy; !found && dir != NULL; dir = save) {
		char cand[PATH_MAX];

		save = strchr(dir, ':');
		if (save != NULL)
			*save++ = '\0';
		snprintf(cand, sizeof(cand), "%s/node", dir[0] ? dir : ".");
		found = access(cand, X_OK) == 0 && realpath(cand, node) != NULL;
	}
	free(copy);
	return found;
}

/* node must be visible in the sandbox: the system folders are; a node
 * elsewhere (nvm, /opt) is bound read-only too. */
static void plan_readonly_paths(struct shoal_wire_lease *l)
{
	static char node_prefix[PATH_MAX];
	char *slash;

	ro[0] = SHOAL_MCP_SERVERS;
	l->sandbox.readonly_paths = ro;
	l->sandbox.n_readonly_paths = 1;
	if (strncmp(node, "/usr/", 5) == 0 || strncmp(node, "/bin/", 5) == 0)
		return;
	shoal_strlcpy(node_prefix, node, sizeof(node_prefix));
	slash = strrchr(node_prefix, '/');	/* .../bin/node -> ... */
	if (slash != NULL)
		*slash = '\0';
	slash = strrchr(node_prefix, '/');
	if (slash != NULL && slash != node_prefix)
		*slash = '\0';
	ro[1] = node_prefix;
	l->sandbox.n_readonly_paths = 2;
}

static void open_session(void)
{
	struct shoal_wire_lease *l = mh_session(LEASE);

	l->files = (struct shoal_wire_file *)(uintptr_t)files;
	l->nfiles = 1;
	l->env = env;
	l->nenv = 1;
	l->sandbox.timeout_ms = 20000;
	l->sandbox.max_output = 16 << 20;
	plan_readonly_paths(l);
	if (backend_none)
		l->sandbox.backend = SHOAL_SANDBOX_NONE;
}

int main(void)
{
	char *slash;

	/* a harness secret the worker inherits: no server may see it */
	setenv(SECRET_NAME, SECRET_VALUE, 1);
	backend_none = getenv("SHOAL_TEST_BACKEND") != NULL &&
		       strcmp(getenv("SHOAL_TEST_BACKEND"), "none") == 0;
	signal(SIGPIPE, SIG_IGN);
	if (!find_node() || access(FS_JS, R_OK) != 0 || access(EVERYTHING_JS, R_OK) != 0) {
		fprintf(stderr, "node or the MCP servers are missing: skipped\n");
		return 77;
	}
	if (realpath(SHOAL_MCP_SERVERS, mcp_dir) == NULL)
		return 77;
	slash = strrchr(mcp_dir, '/');
	if (slash != NULL)
		*slash = '\0';
	snprintf(marker, sizeof(marker), "shoal-mcp-test-%ld", (long)getpid());
	fake_servers();
	if (mh_start(SHOAL_BIN, 2) != 0) {
		fprintf(stderr, "cannot start the harness\n");
		return 1;
	}
	open_session();
	sconn_open(&fs, "fs", fs_argv, 3);
	sconn_open(&everything, "everything", everything_argv, 3);
	RUN(worker_says_it_serves_mcp);
	if (!backend_none) {
		RUN(filesystem_server_lists_its_tools);
		RUN(filesystem_server_reads_writes_and_lists_the_workspace);
		RUN(filesystem_server_refuses_paths_outside_its_folder);
		RUN(host_files_outside_the_workspace_are_not_in_the_sandbox);
		RUN(everything_server_calls_errors_and_timeouts);
		RUN(servers_see_only_the_session_environment);
		RUN(servers_outlive_commands_between_ops);
	}
	RUN(garbage_on_stdout_goes_to_the_harness);
	RUN(an_answer_to_another_id_is_not_the_answer);
	RUN(a_huge_line_is_cut_and_skipped);
	RUN(a_dying_server_says_why);
	RUN(a_server_gets_its_own_variables);
	if (!backend_none)
		RUN(refused_ops_answer_at_once);
	RUN(closing_the_session_ends_its_servers);
	shoal_mcp_client_free(fs.c);
	shoal_mcp_client_free(everything.c);
	mh_stop();
	return test_done();
}
