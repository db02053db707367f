/*
 * Unit tests of request validation before any handler runs: path and method matching
 * against the route table (server/routes.c) and the relay's configuration (server/config.c).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "http.h"
#include "routes.h"

#define LIB "0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
#define DEV "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"

/* ---- routes ---- */

static struct req r;
static const char *allow;

static void routes_setup(void)
{
	memset(&r, 0, sizeof r);
	allow = NULL;
}

TestSuite(routes, .init = routes_setup);

static enum route_match match(const char *method, const char *path)
{
	memset(&r, 0, sizeof r);
	allow = NULL;
	return routes_match(&r, method, path, &allow);
}

/* Every endpoint of PROTOCOL.md section 4 is found under the expected route. */
Test(routes, every_endpoint_found)
{
	static const struct {
		const char *method, *path, *name;
	} want[] = {
		{"POST", "/v1/libraries", "library_create"},
		{"GET", "/v1/libraries/" LIB, "library_get"},
		{"POST", "/v1/libraries/" LIB "/devices", "device_enroll"},
		{"GET", "/v1/libraries/" LIB "/devices", "device_list"},
		{"DELETE", "/v1/libraries/" LIB "/devices/" DEV, "device_revoke"},
		{"POST", "/v1/libraries/" LIB "/join-token", "join_token_rotate"},
		{"DELETE", "/v1/libraries/" LIB "/join-token", "join_token_revoke"},
		{"PUT", "/v1/libraries/" LIB "/schema", "schema_put"},
		{"GET", "/v1/libraries/" LIB "/schema", "schema_get"},
		{"POST", "/v1/libraries/" LIB "/changes", "push"},
		{"GET", "/v1/libraries/" LIB "/changes", "pull"},
		{"POST", "/v1/libraries/" LIB "/ack", "ack"},
		{"GET", "/v1/libraries/" LIB "/records", "records"},
		{"GET", "/v1/libraries/" LIB "/digest", "digest"},
		{"GET", "/v1/libraries/" LIB "/digest/buckets", "digest_buckets"},
		{"GET", "/healthz", "healthz"},
		{"GET", "/readyz", "readyz"},
		{"GET", "/metrics", "metrics"},
		{"POST", "/v1/libraries/" LIB "/compact", "compact"},
	};
	size_t i;

	cr_expect_eq(routes_count, (int)(sizeof want / sizeof want[0]), "the route table has %d routes", routes_count);
	for (i = 0; i < sizeof want / sizeof want[0]; i++) {
		enum route_match m = match(want[i].method, want[i].path);

		cr_expect_eq(m, ROUTE_FOUND, "%s %s: %d", want[i].method, want[i].path, m);
		if (m != ROUTE_FOUND)
			continue;
		cr_assert_not_null(r.route);
		cr_expect_str_eq(r.route->name, want[i].name, "%s %s", want[i].method, want[i].path);
		cr_expect_str_eq(r.route->method, want[i].method);
		cr_expect_eq(r.route, &routes[r.route_index]);
		cr_expect_not_null(r.route->handler);
	}
}

/* Each row of the table matches its own pattern, with real UUIDs in {lib} and {dev}. */
Test(routes, every_table_route_matches_its_pattern)
{
	int i;

	for (i = 0; i < routes_count; i++) {
		char path[256] = "";
		const char *p = routes[i].pattern;
		enum route_match m;

		while (*p) {
			if (!strncmp(p, "{lib}", 5)) {
				strcat(path, LIB);
				p += 5;
			} else if (!strncmp(p, "{dev}", 5)) {
				strcat(path, DEV);
				p += 5;
			} else {
				strncat(path, p, 1);
				p++;
			}
		}
		m = match(routes[i].method, path);
		cr_expect_eq(m, ROUTE_FOUND, "%s %s: %d", routes[i].method, path, m);
		cr_expect_eq(r.route, &routes[i], "%s %s found %s", routes[i].method, path,
			     r.route ? r.route->name : "nothing");
		cr_expect_eq(r.route_index, i);
		if (strstr(routes[i].pattern, "{lib}"))
			cr_expect_str_eq(r.lib, LIB, "%s", path);
		if (strstr(routes[i].pattern, "{dev}"))
			cr_expect_str_eq(r.dev, DEV, "%s", path);
	}
}

Test(routes, captures_lib_and_dev)
{
	cr_assert_eq(match("DELETE", "/v1/libraries/" LIB "/devices/" DEV), ROUTE_FOUND);
	cr_expect_str_eq(r.lib, LIB);
	cr_expect_str_eq(r.dev, DEV);

	cr_assert_eq(match("GET", "/v1/libraries/" DEV "/changes"), ROUTE_FOUND);
	cr_expect_str_eq(r.lib, DEV);
	cr_expect_str_eq(r.dev, "", "no {dev} in the pattern: dev stays empty");
}

/* GET of every path ends in want, with no route set. */
static void expect_get_all(const char *const *paths, size_t n, enum route_match want)
{
	size_t i;

	for (i = 0; i < n; i++) {
		enum route_match m = match("GET", paths[i]);

		cr_expect_eq(m, want, "GET \"%s\": %d, want %d", paths[i], m, want);
		cr_expect_null(r.route, "GET \"%s\" set a route", paths[i]);
	}
}

Test(routes, unknown_path_not_found)
{
	const char *paths[] = {
		"",
		"/",
		"/v1",
		"/v2/libraries",
		"/v1/librariesx",
		"/v1/Libraries",
		"v1/libraries",
		"/healthzz",
		"/v1/libraries/" LIB "/unknown",
		"/v1/libraries/" LIB "/devices/" DEV "/tokens",
		"/v1/libraries/" LIB "/changes/extra",
		"/v1/libraries/" LIB "/digest/buckets/7",
		"/healthz/extra",
		"/metrics/x/",
	};

	expect_get_all(paths, sizeof paths / sizeof paths[0], ROUTE_NOT_FOUND);
}

/* Allow lists exactly the methods in want (order free). */
static void expect_allow(const char *method, const char *path, const char *const *want, size_t nwant)
{
	enum route_match m = match(method, path);
	char copy[128], *tok, *save = NULL;
	size_t n = 0, i;

	cr_assert_eq(m, ROUTE_BAD_METHOD, "%s %s: %d", method, path, m);
	cr_assert_not_null(allow, "%s %s: no Allow", method, path);
	cr_expect_null(r.route);
	snprintf(copy, sizeof copy, "%s", allow);
	for (tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		int known = 0;
		for (i = 0; i < nwant; i++)
			known |= !strcmp(tok, want[i]);
		cr_expect(known, "%s %s: Allow \"%s\" names %s", method, path, allow, tok);
		n++;
	}
	cr_expect_eq(n, nwant, "%s %s: Allow \"%s\"", method, path, allow);
	for (i = 0; i < nwant; i++)
		cr_expect(strstr(allow, want[i]) != NULL, "%s %s: Allow \"%s\" lacks %s", method, path, allow,
			  want[i]);
}

Test(routes, wrong_method_lists_allowed)
{
	const char *get_post[] = {"GET", "POST"};
	const char *get_put[] = {"GET", "PUT"};
	const char *get[] = {"GET"};
	const char *post[] = {"POST"};
	const char *del[] = {"DELETE"};

	expect_allow("DELETE", "/v1/libraries/" LIB "/changes", get_post, 2);
	expect_allow("PUT", "/v1/libraries/" LIB "/devices", get_post, 2);
	expect_allow("POST", "/v1/libraries/" LIB "/schema", get_put, 2);
	expect_allow("GET", "/v1/libraries", post, 1);
	expect_allow("DELETE", "/v1/libraries/" LIB, get, 1);
	expect_allow("GET", "/v1/libraries/" LIB "/devices/" DEV, del, 1);
	expect_allow("GET", "/v1/libraries/" LIB "/ack", post, 1);
	expect_allow("POST", "/v1/libraries/" LIB "/digest/buckets", get, 1);
	expect_allow("POST", "/healthz", get, 1);
	expect_allow("HEAD", "/metrics", get, 1);
	/* methods are case-sensitive */
	expect_allow("get", "/readyz", get, 1);
}

Test(routes, allow_for_changes_is_get_and_post)
{
	cr_assert_eq(match("PATCH", "/v1/libraries/" LIB "/changes"), ROUTE_BAD_METHOD);
	cr_assert_not_null(allow);
	cr_expect(!strcmp(allow, "GET, POST") || !strcmp(allow, "POST, GET"), "Allow: \"%s\"", allow);
}

Test(routes, bad_uuid_in_path)
{
	const char *paths[] = {
		"/v1/libraries/0F8E7D6C-5B4A-4392-8170-6F5E4D3C2B1A",
		"/v1/libraries/0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1",
		"/v1/libraries/0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1aa",
		"/v1/libraries/0f8e7d6c5b4a439281706f5e4d3c2b1a",
		"/v1/libraries/{0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a}",
		"/v1/libraries/not-a-uuid",
		"/v1/libraries/0F8E7D6C-5B4A-4392-8170-6F5E4D3C2B1A/",
	};

	expect_get_all(paths, sizeof paths / sizeof paths[0], ROUTE_BAD_ID);
	cr_expect_eq(match("POST", "/v1/libraries/0F8E7D6C-5B4A-4392-8170-6F5E4D3C2B1A/changes"), ROUTE_BAD_ID);
	cr_expect_eq(match("GET", "/v1/libraries/abc/digest/buckets"), ROUTE_BAD_ID);
	cr_expect_eq(match("DELETE", "/v1/libraries/" LIB "/devices/A1B2C3D4-E5F6-4A7B-8C9D-0E1F2A3B4C5D"),
		     ROUTE_BAD_ID);
	cr_expect_eq(match("DELETE", "/v1/libraries/" LIB "/devices/a1b2c3d4"), ROUTE_BAD_ID);
	cr_expect_eq(match("DELETE", "/v1/libraries/0f8e7d6c/devices/" DEV), ROUTE_BAD_ID);
}

Test(routes, trailing_slash_accepted)
{
	cr_assert_eq(match("GET", "/healthz/"), ROUTE_FOUND);
	cr_expect_str_eq(r.route->name, "healthz");
	cr_assert_eq(match("POST", "/v1/libraries/"), ROUTE_FOUND);
	cr_expect_str_eq(r.route->name, "library_create");
	cr_assert_eq(match("GET", "/v1/libraries/" LIB "/"), ROUTE_FOUND);
	cr_expect_str_eq(r.route->name, "library_get");
	cr_expect_str_eq(r.lib, LIB);
	cr_assert_eq(match("POST", "/v1/libraries/" LIB "/changes/"), ROUTE_FOUND);
	cr_expect_str_eq(r.route->name, "push");
	cr_assert_eq(match("DELETE", "/v1/libraries/" LIB "/devices/" DEV "/"), ROUTE_FOUND);
	cr_expect_str_eq(r.route->name, "device_revoke");
	cr_expect_str_eq(r.dev, DEV);
}

/* ---- config ---- */

static const char *const env_names[] = {
	"DATABASE_URL",		   "SYNCRELAY_LISTEN",	   "SYNCRELAY_ADMIN_TOKEN",  "SYNCRELAY_MAX_BODY_BYTES",
	"SYNCRELAY_MAX_BATCH",	   "SYNCRELAY_MAX_SKEW_MS", "SYNCRELAY_THREADS",	     "SYNCRELAY_DB_POOL",
	"SYNCRELAY_MAX_WAIT",	   "SYNCRELAY_SHUTDOWN_GRACE", "SYNCRELAY_LOG_LEVEL",
	"SYNCRELAY_CONFIG",	   "SYNCRELAY_TLS_CERT",	   "SYNCRELAY_TLS_KEY",	     "SYNCRELAY_LOG_FORMAT",
	"SYNCRELAY_CORS_ORIGINS",  "SYNCRELAY_DB_WAIT",
};

static FILE *errf;

static void config_setup(void)
{
	size_t i;

	/* the caller's environment (a developer's DATABASE_URL) must not leak in */
	for (i = 0; i < sizeof env_names / sizeof env_names[0]; i++)
		unsetenv(env_names[i]);
	free(cfg.database_url);
	free(cfg.listen);
	free(cfg.admin_token);
	free(cfg.config_file);
	free(cfg.tls_cert);
	free(cfg.tls_key);
	free(cfg.log_format);
	free(cfg.cors_origins);
	memset(&cfg, 0, sizeof cfg);
	/* keep config_load's messages to read them back */
	errf = tmpfile();
	cr_assert_not_null(errf);
	fflush(stderr);
	cr_assert_neq(dup2(fileno(errf), STDERR_FILENO), -1);
	cr_assert_not_null(freopen("/dev/null", "w", stdout));
}

static void config_teardown(void)
{
	if (errf)
		fclose(errf);
	errf = NULL;
}

TestSuite(config, .init = config_setup, .fini = config_teardown);

static const char *stderr_text(void)
{
	static char buf[1024];
	ssize_t n;

	fflush(stderr);
	n = pread(fileno(errf), buf, sizeof buf - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

#define LOAD(...)                                                                                      \
	({                                                                                             \
		char *argv_[] = {"syncrelayd", __VA_ARGS__, NULL};                                     \
		config_load((int)(sizeof argv_ / sizeof argv_[0]) - 1, argv_);                         \
	})
#define LOAD0() config_load(1, (char *[]){"syncrelayd", NULL})

Test(config, defaults)
{
	setenv("DATABASE_URL", "postgresql:///syncrelay", 1);
	cr_assert_eq(LOAD0(), 0, "%s", stderr_text());
	cr_expect_str_eq(cfg.database_url, "postgresql:///syncrelay");
	cr_expect_str_eq(cfg.listen, "127.0.0.1:8080");
	cr_expect_null(cfg.admin_token);
	cr_expect_eq(cfg.max_body_bytes, 16 * 1024 * 1024);
	cr_expect_eq(cfg.max_batch, 10000);
	cr_expect_eq(cfg.max_skew_ms, 300000);
	cr_expect_eq(cfg.threads, 8);
	cr_expect_eq(cfg.db_pool, 8);
	cr_expect_eq(cfg.max_wait_s, 60);
	cr_expect_eq(cfg.shutdown_grace_s, 30);
	cr_expect_eq(cfg.log_level, 2);
	cr_expect_str_eq(stderr_text(), "");
}

Test(config, env_overrides_defaults)
{
	setenv("DATABASE_URL", "host=/tmp dbname=x", 1);
	setenv("SYNCRELAY_LISTEN", "0.0.0.0:9090", 1);
	setenv("SYNCRELAY_ADMIN_TOKEN", "s3cret", 1);
	setenv("SYNCRELAY_MAX_BODY_BYTES", "2048", 1);
	setenv("SYNCRELAY_MAX_BATCH", "5", 1);
	setenv("SYNCRELAY_MAX_SKEW_MS", "0", 1);
	setenv("SYNCRELAY_THREADS", "3", 1);
	setenv("SYNCRELAY_DB_POOL", "4", 1);
	setenv("SYNCRELAY_MAX_WAIT", "7", 1);
	setenv("SYNCRELAY_SHUTDOWN_GRACE", "9", 1);
	setenv("SYNCRELAY_LOG_LEVEL", "3", 1);
	cr_assert_eq(LOAD0(), 0, "%s", stderr_text());
	cr_expect_str_eq(cfg.database_url, "host=/tmp dbname=x");
	cr_expect_str_eq(cfg.listen, "0.0.0.0:9090");
	cr_expect_str_eq(cfg.admin_token, "s3cret");
	cr_expect_eq(cfg.max_body_bytes, 2048);
	cr_expect_eq(cfg.max_batch, 5);
	cr_expect_eq(cfg.max_skew_ms, 0);
	cr_expect_eq(cfg.threads, 3);
	cr_expect_eq(cfg.db_pool, 4);
	cr_expect_eq(cfg.max_wait_s, 7);
	cr_expect_eq(cfg.shutdown_grace_s, 9);
	cr_expect_eq(cfg.log_level, 3);
}

Test(config, empty_env_keeps_default)
{
	setenv("DATABASE_URL", "postgresql:///x", 1);
	setenv("SYNCRELAY_THREADS", "", 1);
	setenv("SYNCRELAY_LISTEN", "", 1);
	cr_assert_eq(LOAD0(), 0, "%s", stderr_text());
	cr_expect_eq(cfg.threads, 8);
	cr_expect_str_eq(cfg.listen, "127.0.0.1:8080");
}

Test(config, flag_with_separate_value)
{
	cr_assert_eq(LOAD("--database-url", "postgresql:///a", "--listen", "[::1]:0", "--threads", "16",
			  "--max-batch", "1000000", "--admin-token", "tok"),
		     0, "%s", stderr_text());
	cr_expect_str_eq(cfg.database_url, "postgresql:///a");
	cr_expect_str_eq(cfg.listen, "[::1]:0");
	cr_expect_eq(cfg.threads, 16);
	cr_expect_eq(cfg.max_batch, 1000000);
	cr_expect_str_eq(cfg.admin_token, "tok");
}

Test(config, flag_with_equals)
{
	cr_assert_eq(LOAD("--database-url=postgresql:///a?x=1", "--max-skew-ms=1000", "--db-pool=256",
			  "--max-wait=0", "--shutdown-grace=3600", "--log-level=0", "--max-body-bytes=1024"),
		     0, "%s", stderr_text());
	cr_expect_str_eq(cfg.database_url, "postgresql:///a?x=1", "only the first = separates");
	cr_expect_eq(cfg.max_skew_ms, 1000);
	cr_expect_eq(cfg.db_pool, 256);
	cr_expect_eq(cfg.max_wait_s, 0);
	cr_expect_eq(cfg.shutdown_grace_s, 3600);
	cr_expect_eq(cfg.log_level, 0);
	cr_expect_eq(cfg.max_body_bytes, 1024);
}

Test(config, flags_override_env)
{
	setenv("DATABASE_URL", "postgresql:///env", 1);
	setenv("SYNCRELAY_THREADS", "2", 1);
	setenv("SYNCRELAY_LISTEN", "127.0.0.1:1", 1);
	cr_assert_eq(LOAD("--threads=5", "--database-url", "postgresql:///flag"), 0, "%s", stderr_text());
	cr_expect_eq(cfg.threads, 5);
	cr_expect_str_eq(cfg.database_url, "postgresql:///flag");
	cr_expect_str_eq(cfg.listen, "127.0.0.1:1", "an env value no flag overrides stays");
}

Test(config, last_flag_wins)
{
	cr_assert_eq(LOAD("--database-url=a", "--threads=5", "--threads", "6"), 0, "%s", stderr_text());
	cr_expect_eq(cfg.threads, 6);
}

Test(config, invalid_integer_rejected)
{
	const char *bad[] = {"abc", "", "4x", "1.5", "0x10", "99999999999999999999", "-"};
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char flag[64];

		snprintf(flag, sizeof flag, "--threads=%s", bad[i]);
		cr_expect_eq(LOAD("--database-url=x", flag), -1, "%s accepted", flag);
		cr_expect_eq(LOAD("--database-url=x", "--threads", (char *)bad[i]), -1, "--threads \"%s\" accepted",
			     bad[i]);
	}
	cr_expect(strstr(stderr_text(), "--threads") != NULL, "message names the flag: %s", stderr_text());
}

Test(config, out_of_range_rejected)
{
	const char *bad[] = {"--threads=0",	    "--threads=257",	     "--db-pool=0",   "--db-pool=257",
			     "--log-level=4",	    "--log-level=-1",	     "--max-batch=0", "--max-batch=1000001",
			     "--max-body-bytes=1023", "--max-body-bytes=4294967297", "--max-skew-ms=-1",
			     "--max-wait=3601",	    "--shutdown-grace=-5"};
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_expect_eq(LOAD("--database-url=x", (char *)bad[i]), -1, "%s accepted", bad[i]);
	/* the bounds themselves are fine */
	cr_expect_eq(LOAD("--database-url=x", "--threads=1", "--log-level=3", "--max-body-bytes=4294967296"), 0,
		     "%s", stderr_text());
	cr_expect_eq(cfg.threads, 1);
	cr_expect_eq(cfg.max_body_bytes, INT64_C(4294967296));
}

Test(config, invalid_env_rejected)
{
	setenv("DATABASE_URL", "x", 1);
	setenv("SYNCRELAY_MAX_BATCH", "lots", 1);
	cr_expect_eq(LOAD0(), -1);
	cr_expect(strstr(stderr_text(), "SYNCRELAY_MAX_BATCH") != NULL, "message names the variable: %s",
		  stderr_text());
	setenv("SYNCRELAY_MAX_BATCH", "0", 1);
	cr_expect_eq(LOAD0(), -1);
}

Test(config, unknown_flag_rejected)
{
	cr_expect_eq(LOAD("--database-url=x", "--nope"), -1);
	cr_expect(strstr(stderr_text(), "--nope") != NULL, "message names the option: %s", stderr_text());
	cr_expect_eq(LOAD("--database-url=x", "--thread=4"), -1, "a prefix of a flag is not the flag");
	cr_expect_eq(LOAD("--database-url=x", "--threadsx=4"), -1);
	cr_expect_eq(LOAD("--database-url=x", "--threadsx", "4"), -1, "a flag with a known prefix is not that flag");
	cr_expect_eq(LOAD("--database-url=x", "--listen-on", "127.0.0.1:1"), -1);
	cr_expect_eq(LOAD("--database-url=x", "-t", "4"), -1);
	cr_expect_eq(LOAD("--database-url=x", "threads=4"), -1);
	cr_expect_eq(LOAD("--database-url=x", "--DATABASE-URL=y"), -1);
}

Test(config, flag_without_value_rejected)
{
	cr_expect_eq(LOAD("--database-url=x", "--threads"), -1);
	cr_expect(strstr(stderr_text(), "--threads") != NULL, "%s", stderr_text());
	cr_expect_eq(LOAD("--database-url"), -1);
}

Test(config, missing_database_url_rejected)
{
	cr_expect_eq(LOAD0(), -1);
	cr_expect(strstr(stderr_text(), "DATABASE_URL") != NULL, "message says what is missing: %s",
		  stderr_text());
	cr_expect_eq(LOAD("--threads=4", "--listen=127.0.0.1:0"), -1);
	setenv("DATABASE_URL", "", 1);
	cr_expect_eq(LOAD0(), -1, "an empty DATABASE_URL is no database");
}

Test(config, help_returns_one)
{
	cr_expect_eq(LOAD("--help"), 1);
	cr_expect_eq(LOAD("-h"), 1);
}
