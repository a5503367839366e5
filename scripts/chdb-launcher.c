/*
 * chdb-launcher: runs chDB's embedded ClickHouse engine (libchdb.so) with a
 * clickhouse-local argv. scripts/clickhouse.sh uses it to run a real
 * ClickHouse server on loopback: the argv it passes makes the engine start
 * the TCP and HTTP listeners and then run an endless keep-alive query, so
 * query_stable_v2 only returns when that query is killed.
 *
 * Usage:
 *   chdb-launcher LIBCHDB.so --version          print chdb_version()
 *   chdb-launcher LIBCHDB.so CLICKHOUSE-LOCAL-ARGS...
 *
 * The library is loaded with dlopen, so the launcher builds without it.
 * Exit status: 0 when query_stable_v2 returned without an argument error
 * (failures inside --query statements are only printed by the engine on
 * stderr: judge readiness by HTTP /ping, never by this status), 1 when the
 * engine rejected the arguments, 2 when the library could not be loaded.
 *
 * Build: gcc -O2 -o chdb-launcher chdb-launcher.c -ldl
 */
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* From chDB's chdb.h (CHDB_VERSION "26.7.3"); the npm package ships no header. */
struct local_result_v2 {
	char *buf;
	size_t len;
	void *_vec;
	double elapsed;
	uint64_t rows_read;
	uint64_t bytes_read;
	char *error_message;
};

typedef struct local_result_v2 *(*query_stable_v2_fn)(int argc, char **argv);
typedef void (*free_result_v2_fn)(struct local_result_v2 *result);
typedef const char *(*chdb_version_fn)(void);

static void *sym(void *lib, const char *name)
{
	void *p = dlsym(lib, name);
	if (p == NULL)
		fprintf(stderr, "chdb-launcher: %s: %s\n", name, dlerror());
	return p;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s LIBCHDB.so --version | CLICKHOUSE-LOCAL-ARGS...\n", argv[0]);
		return 2;
	}
	void *lib = dlopen(argv[1], RTLD_NOW);
	if (lib == NULL) {
		fprintf(stderr, "chdb-launcher: dlopen: %s\n", dlerror());
		return 2;
	}
	query_stable_v2_fn query = (query_stable_v2_fn)sym(lib, "query_stable_v2");
	free_result_v2_fn free_result = (free_result_v2_fn)sym(lib, "free_result_v2");
	chdb_version_fn version = (chdb_version_fn)sym(lib, "chdb_version");
	if (query == NULL || free_result == NULL || version == NULL)
		return 2;

	if (argc == 3 && strcmp(argv[2], "--version") == 0) {
		printf("%s\n", version());
		return 0;
	}

	/* The engine skips argv[0] as the program name; reuse the library's slot. */
	char **cargv = argv + 1;
	int cargc = argc - 1;
	cargv[0] = "clickhouse-local";

	struct local_result_v2 *res = query(cargc, cargv);
	if (res == NULL) {
		fprintf(stderr, "chdb-launcher: query_stable_v2 returned NULL\n");
		return 1;
	}
	int status = 0;
	if (res->error_message != NULL) {
		fprintf(stderr, "chdb-launcher: %s\n", res->error_message);
		status = 1;
	}
	free_result(res);
	return status;
}
