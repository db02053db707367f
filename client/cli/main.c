/* syncrelay: the command-line client, built on the public libsyncrelay API only. */
#include <errno.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cmd_index.h"
#include "cmd_rejected.h"
#include "syncrelay.h"

static volatile int stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	va_list ap;

	fputs("syncrelay: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

static int usage(void)
{
	fputs("usage: syncrelay [--store PATH] [--json] COMMAND [ARGS]\n"
	      "  enroll --relay URL --library ID --join-token T [--device-id UUID] [--name N]\n"
	      "  schema set FILE | schema show\n"
	      "  put MODEL RECORD_ID JSON | delete MODEL RECORD_ID | get MODEL RECORD_ID\n"
	      "  import MODEL FILE.jsonl\n"
	      "  sync [--watch] [--timeout S] [--verify-every S]\n"
	      "  status [--json]\n"
	      "  verify [--repair] [--json]\n"
	      "  rejected [list] | rejected retry ID|all | rejected drop ID|all\n"
	      "  index DIR\n"
	      "The store is --store PATH or $SYNCRELAY_STORE.\n",
	      stderr);
	return 2;
}

static int lib_fail(sr_client *c, int rc)
{
	return fail("%s", sr_client_errmsg(c)[0] ? sr_client_errmsg(c) : sr_strerror(rc));
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (buf = malloc((size_t)n + 1)) != NULL) {
		if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		} else {
			buf[n] = '\0';
		}
	}
	fclose(f);
	return buf;
}

/* Takes "--name value" out of args; returns the value or NULL. */
static const char *take_opt(int *argc, char **argv, const char *name)
{
	int i;

	for (i = 0; i < *argc; i++)
		if (!strcmp(argv[i], name) && i + 1 < *argc) {
			const char *v = argv[i + 1];
			memmove(&argv[i], &argv[i + 2], (size_t)(*argc - i - 2) * sizeof *argv);
			*argc -= 2;
			return v;
		}
	return NULL;
}

static int take_flag(int *argc, char **argv, const char *name)
{
	int i;

	for (i = 0; i < *argc; i++)
		if (!strcmp(argv[i], name)) {
			memmove(&argv[i], &argv[i + 1], (size_t)(*argc - i - 1) * sizeof *argv);
			(*argc)--;
			return 1;
		}
	return 0;
}

static void print_status_text(const char *json)
{
	json_t *j = json_loads(json, 0, NULL);
	const char *k;
	json_t *v;

	printf("device    %s\nlibrary   %s\nstate     %s\ncursor    %lld\nhead      %lld\noutbox    %lld\nunresolved %lld\n",
	       json_string_value(json_object_get(j, "device_id")), json_string_value(json_object_get(j, "library_id")),
	       json_string_value(json_object_get(j, "state")), (long long)json_integer_value(json_object_get(j, "cursor")),
	       (long long)json_integer_value(json_object_get(j, "head")),
	       (long long)json_integer_value(json_object_get(j, "outbox")),
	       (long long)json_integer_value(json_object_get(j, "unresolved")));
	if (json_is_integer(json_object_get(j, "clock_offset_ms")))
		printf("clock     %+.1f s against the relay\n",
		       (double)json_integer_value(json_object_get(j, "clock_offset_ms")) / 1000.0);
	printf("rejected  %zu\n", json_array_size(json_object_get(j, "rejected")));
	json_object_foreach(json_object_get(j, "records"), k, v)
		printf("records   %s: %lld\n", k, (long long)json_integer_value(v));
	json_object_foreach(json_object_get(j, "refs"), k, v)
		printf("refs      %s: set %lld, unresolved %lld\n", k,
		       (long long)json_integer_value(json_object_get(v, "set")),
		       (long long)json_integer_value(json_object_get(v, "unresolved")));
	json_decref(j);
}

static void print_verify_text(const char *json)
{
	json_t *j = json_loads(json, 0, NULL), *s, *rep = json_object_get(j, "repaired");
	size_t i;

	json_array_foreach(json_object_get(j, "scopes"), i, s) {
		const char *owner = json_string_value(json_object_get(s, "owner"));
		printf("%-8s %s/%s local %lld %s relay %lld %s%s\n", json_is_true(json_object_get(s, "match")) ? "match" : "MISMATCH",
		       json_string_value(json_object_get(s, "model")), owner ? owner : "shared",
		       (long long)json_integer_value(json_object_get(json_object_get(s, "local"), "count")),
		       json_string_value(json_object_get(json_object_get(s, "local"), "hash")),
		       (long long)json_integer_value(json_object_get(json_object_get(s, "relay"), "count")),
		       json_string_value(json_object_get(json_object_get(s, "relay"), "hash")),
		       json_is_true(json_object_get(s, "relay_behind")) ? " (relay behind: newer here)" : "");
	}
	printf("repaired: fetched %lld, replaced %lld, removed %lld, kept %lld, re-pushed %lld\n",
	       (long long)json_integer_value(json_object_get(rep, "fetched")),
	       (long long)json_integer_value(json_object_get(rep, "replaced")),
	       (long long)json_integer_value(json_object_get(rep, "removed")),
	       (long long)json_integer_value(json_object_get(rep, "kept")),
	       (long long)json_integer_value(json_object_get(rep, "repushed")));
	json_decref(j);
}

int main(int argc, char **argv)
{
	const char *store, *cmd;
	int json, rc = 0, lrc;
	sr_client *c = NULL;
	char *out = NULL;

	argc--;
	argv++;
	store = take_opt(&argc, argv, "--store");
	json = take_flag(&argc, argv, "--json");
	if (!store)
		store = getenv("SYNCRELAY_STORE");
	if (argc < 1)
		return usage();
	cmd = argv[0];
	argc--;
	argv++;
	if (!store || !*store)
		return fail("no store: give --store PATH or set SYNCRELAY_STORE");
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help"))
		return usage();
	if (strcmp(cmd, "enroll") && access(store, F_OK) != 0)
		return fail("no store at \"%s\" (run enroll first)", store);
	if ((lrc = sr_client_open(&c, store)))
		return fail("could not open store \"%s\": %s", store, sr_strerror(lrc));
	sr_client_set_progress(c, !json && isatty(2));

	if (!strcmp(cmd, "enroll")) {
		const char *relay = take_opt(&argc, argv, "--relay"), *lib = take_opt(&argc, argv, "--library");
		const char *join = take_opt(&argc, argv, "--join-token"), *dev = take_opt(&argc, argv, "--device-id");
		const char *name = take_opt(&argc, argv, "--name");

		if (!relay || !lib || !join || argc)
			rc = fail("enroll needs --relay URL --library ID --join-token T");
		else if ((lrc = sr_client_enroll(c, relay, lib, join, dev, name)))
			rc = lib_fail(c, lrc);
		else if ((lrc = sr_client_status(c, &out)))
			rc = lib_fail(c, lrc);
		else if (json)
			puts(out);
		else
			printf("enrolled\n");
	} else if (!strcmp(cmd, "schema") && argc == 2 && !strcmp(argv[0], "set")) {
		char *text = read_file(argv[1]);

		if (!text)
			rc = fail("could not read \"%s\": %s", argv[1], strerror(errno));
		else if ((lrc = sr_client_schema_set(c, text)) || (lrc = sr_client_schema_get(c, &out)))
			rc = lib_fail(c, lrc);
		else
			puts(out);
		free(text);
	} else if (!strcmp(cmd, "schema") && argc == 1 && !strcmp(argv[0], "show")) {
		if ((lrc = sr_client_schema_get(c, &out)))
			rc = lib_fail(c, lrc);
		else
			puts(out);
	} else if (!strcmp(cmd, "put") && argc == 3) {
		if ((lrc = sr_client_put(c, argv[0], argv[1], argv[2])))
			rc = lib_fail(c, lrc);
	} else if (!strcmp(cmd, "delete") && argc == 2) {
		if ((lrc = sr_client_delete(c, argv[0], argv[1])))
			rc = lib_fail(c, lrc);
	} else if (!strcmp(cmd, "get") && argc == 2) {
		if ((lrc = sr_client_get(c, &out, argv[0], argv[1])))
			rc = lib_fail(c, lrc);
		else
			puts(out);
	} else if (!strcmp(cmd, "import") && argc == 2) {
		long n = 0;

		if ((lrc = sr_client_import(c, argv[0], argv[1], &n)))
			rc = lib_fail(c, lrc);
		else if (json)
			printf("{\"imported\":%ld}\n", n);
		else
			printf("imported %ld\n", n);
	} else if (!strcmp(cmd, "sync")) {
		sr_sync_opts o = SR_SYNC_OPTS_INIT;
		const char *t = take_opt(&argc, argv, "--timeout"), *ve = take_opt(&argc, argv, "--verify-every");
		char *end = NULL;

		o.watch = take_flag(&argc, argv, "--watch");
		o.stop = &stop_flag;
		if (t) {
			o.timeout_s = strtod(t, &end);
			if (!*t || *end || o.timeout_s < 0)
				return fail("--timeout needs a number of seconds, not \"%s\"", t);
		}
		if (ve) {
			o.verify_every_s = strtod(ve, &end);
			if (!*ve || *end || o.verify_every_s <= 0)
				return fail("--verify-every needs a positive number of seconds, not \"%s\"", ve);
		}
		if (argc)
			rc = usage();
		else {
			signal(SIGINT, on_signal);
			signal(SIGTERM, on_signal);
			lrc = sr_client_sync(c, &o);
			cli_sync_warnings(c);
			if (lrc)
				rc = lib_fail(c, lrc);
			else if (json && !sr_client_status(c, &out))
				puts(out);
		}
	} else if (!strcmp(cmd, "status") && argc == 0) {
		if ((lrc = sr_client_status(c, &out)))
			rc = lib_fail(c, lrc);
		else if (json)
			puts(out);
		else
			print_status_text(out);
		if (!lrc)
			cli_sync_warnings(c);
	} else if (!strcmp(cmd, "verify")) {
		int repair = take_flag(&argc, argv, "--repair");

		if (argc)
			rc = usage();
		else {
			lrc = sr_client_verify(c, repair, &out);
			if (out)
				json ? (void)puts(out) : print_verify_text(out);
			if (lrc == SR_EMISMATCH)
				rc = fail("verify: %s", sr_client_errmsg(c));
			else if (lrc)
				rc = lib_fail(c, lrc);
		}
	} else if (!strcmp(cmd, "rejected")) {
		rc = cmd_rejected(c, argc, argv, json);
	} else if (!strcmp(cmd, "index") && argc == 1) {
		rc = cmd_index(c, argv[0], json, !json && isatty(2));
	} else {
		rc = usage();
	}
	free(out);
	sr_client_free(c);
	return rc;
}
