/* syncrelay: the command-line client, built on the public libsyncrelay API only. Every
 * command is one entry of the commands table: its name, synopsis, summary, whether it needs
 * a store, and the function that runs it. */
#include <errno.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cmd_index.h"
#include "cmd_rejected.h"
#include "syncrelay.h"
#include "syncrelay_codec.h"

#ifndef SYNCRELAY_VERSION
#define SYNCRELAY_VERSION "unknown"
#endif

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

/* What a command runs with: the open client (NULL for STORE_NONE commands), --json, and the
 * library's output string, freed after the command. */
struct ctx {
	sr_client *c;
	const char *store;
	int json;
	char *out;
};

enum store_use {
	STORE_NONE,     /* runs without a store */
	STORE_EXISTING, /* the store must exist */
	STORE_CREATE    /* creates the store; removed again when the command fails */
};

struct command {
	const char *name;
	const char *args;    /* synopsis after the name */
	const char *summary; /* one line */
	enum store_use store;
	int (*run)(struct ctx *x, int argc, char **argv);
};

static int cmd_help(struct ctx *x, int argc, char **argv);
static int run_enroll(struct ctx *x, int argc, char **argv);
static int run_schema(struct ctx *x, int argc, char **argv);
static int run_put(struct ctx *x, int argc, char **argv);
static int run_delete(struct ctx *x, int argc, char **argv);
static int run_get(struct ctx *x, int argc, char **argv);
static int run_import(struct ctx *x, int argc, char **argv);
static int run_sync(struct ctx *x, int argc, char **argv);
static int run_status(struct ctx *x, int argc, char **argv);
static int run_verify(struct ctx *x, int argc, char **argv);
static int run_index(struct ctx *x, int argc, char **argv);
static int run_rejected(struct ctx *x, int argc, char **argv);

/* Adding a command is one entry here and its run function. */
static const struct command commands[] = {
	{"enroll", "--relay URL --library ID --join-token T [--device-id UUID] [--name N] [--ca-file PEM]",
	 "join a library as a new device (creates the store)", STORE_CREATE, run_enroll},
	{"schema", "set FILE | show", "push a schema document, or print the one kept locally", STORE_EXISTING,
	 run_schema},
	{"put", "MODEL RECORD_ID JSON", "write a record locally (pushed at the next sync)", STORE_EXISTING, run_put},
	{"delete", "MODEL RECORD_ID", "delete a record locally (pushed at the next sync)", STORE_EXISTING, run_delete},
	{"get", "MODEL RECORD_ID", "print a live record's data", STORE_EXISTING, run_get},
	{"import", "MODEL FILE.jsonl", "write records from JSON Lines {\"record_id\":...,\"data\":{...}}",
	 STORE_EXISTING, run_import},
	{"sync", "[--watch] [--timeout S] [--verify-every S]",
	 "push local changes and pull to head; --watch keeps going (and waits for a relay that is down)",
	 STORE_EXISTING, run_sync},
	{"status", "[--json]", "print the device's state, cursor, head and counts", STORE_EXISTING, run_status},
	{"verify", "[--repair] [--json]", "compare local and relay digests; --repair heals mismatches",
	 STORE_EXISTING, run_verify},
	{"rejected", "[list] | retry ID|all | drop ID|all",
	 "list the changes the relay refused for good; put them back in the outbox, or drop them", STORE_EXISTING,
	 run_rejected},
	{"index", "DIR", "index the files under DIR into the reference schema's models", STORE_EXISTING, run_index},
	{"help", "[COMMAND]", "print this overview, or one command's usage", STORE_NONE, cmd_help},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const struct command *find_command(const char *name)
{
	size_t i;

	for (i = 0; i < NCOMMANDS; i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

static void print_overview(FILE *f)
{
	size_t i;

	fputs("usage: syncrelay [--store PATH] [--json] COMMAND [ARGS]\n"
	      "       syncrelay --help | --version | help COMMAND | COMMAND --help\n\ncommands:\n",
	      f);
	for (i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
	fputs("\nThe store is --store PATH or $SYNCRELAY_STORE. Exit status: 0 done, 1 failed, 2 usage.\n", f);
}

static void print_command(FILE *f, const struct command *k)
{
	fprintf(f, "usage: syncrelay [--store PATH] [--json] %s %s\n  %s\n", k->name, k->args, k->summary);
}

/* A usage error of command k: its synopsis on stderr, exit status 2. */
static int usage_of(const struct command *k)
{
	print_command(stderr, k);
	return 2;
}

static int cmd_help(struct ctx *x, int argc, char **argv)
{
	const struct command *k;

	(void)x;
	if (argc == 0) {
		print_overview(stdout);
		return 0;
	}
	k = find_command(argv[0]);
	if (!k)
		return fail("no command \"%s\" (see syncrelay --help)", argv[0]);
	print_command(stdout, k);
	return 0;
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

static int run_enroll(struct ctx *x, int argc, char **argv)
{
	const char *relay = take_opt(&argc, argv, "--relay"), *lib = take_opt(&argc, argv, "--library");
	const char *join = take_opt(&argc, argv, "--join-token"), *dev = take_opt(&argc, argv, "--device-id");
	const char *name = take_opt(&argc, argv, "--name"), *ca = take_opt(&argc, argv, "--ca-file");
	char ca_abs[4096];
	int lrc;

	if (!relay || !lib || !join || argc) {
		fail("enroll needs --relay URL --library ID --join-token T");
		return 2;
	}
	/* kept in the store, so made absolute: later commands may run elsewhere */
	if (ca && ca[0] != '/' && strlen(ca) < 2048 && getcwd(ca_abs, sizeof ca_abs - 1 - strlen(ca) - 1)) {
		strcat(ca_abs, "/");
		strcat(ca_abs, ca);
		ca = ca_abs;
	}
	if (ca && (lrc = sr_client_set_ca_file(x->c, ca)))
		return lib_fail(x->c, lrc);
	if ((lrc = sr_client_enroll(x->c, relay, lib, join, dev, name)) || (lrc = sr_client_status(x->c, &x->out)))
		return lib_fail(x->c, lrc);
	if (x->json)
		puts(x->out);
	else
		printf("enrolled\n");
	return 0;
}

static int run_schema(struct ctx *x, int argc, char **argv)
{
	int lrc, rc = 0;

	if (argc == 2 && !strcmp(argv[0], "set")) {
		char *text = read_file(argv[1]);

		if (!text)
			return fail("could not read \"%s\": %s", argv[1], strerror(errno));
		if ((lrc = sr_client_schema_set(x->c, text)) || (lrc = sr_client_schema_get(x->c, &x->out)))
			rc = lib_fail(x->c, lrc);
		else
			puts(x->out);
		free(text);
		return rc;
	}
	if (argc == 1 && !strcmp(argv[0], "show")) {
		if ((lrc = sr_client_schema_get(x->c, &x->out)))
			return lib_fail(x->c, lrc);
		puts(x->out);
		return 0;
	}
	return usage_of(find_command("schema"));
}

static int run_put(struct ctx *x, int argc, char **argv)
{
	int lrc;

	if (argc != 3)
		return usage_of(find_command("put"));
	if ((lrc = sr_client_put(x->c, argv[0], argv[1], argv[2])))
		return lib_fail(x->c, lrc);
	return 0;
}

static int run_delete(struct ctx *x, int argc, char **argv)
{
	int lrc;

	if (argc != 2)
		return usage_of(find_command("delete"));
	if ((lrc = sr_client_delete(x->c, argv[0], argv[1])))
		return lib_fail(x->c, lrc);
	return 0;
}

static int run_get(struct ctx *x, int argc, char **argv)
{
	int lrc;

	if (argc != 2)
		return usage_of(find_command("get"));
	if ((lrc = sr_client_get(x->c, &x->out, argv[0], argv[1])))
		return lib_fail(x->c, lrc);
	puts(x->out);
	return 0;
}

static int run_import(struct ctx *x, int argc, char **argv)
{
	long n = 0;
	int lrc;

	if (argc != 2)
		return usage_of(find_command("import"));
	if ((lrc = sr_client_import(x->c, &n, argv[0], argv[1])))
		return lib_fail(x->c, lrc);
	if (x->json)
		printf("{\"imported\":%ld}\n", n);
	else
		printf("imported %ld\n", n);
	return 0;
}

/* Sleeps s seconds in short steps, returning early once a signal asked to stop. */
static void sleep_unless_stopped(double s)
{
	struct timespec tick = {0, 100 * 1000 * 1000};
	int steps = (int)(s * 10);

	while (steps-- > 0 && !stop_flag)
		nanosleep(&tick, NULL);
}

static int run_sync(struct ctx *x, int argc, char **argv)
{
	sr_sync_opts o = SR_SYNC_OPTS_INIT;
	const char *t = take_opt(&argc, argv, "--timeout"), *ve = take_opt(&argc, argv, "--verify-every");
	char *end = NULL;
	int lrc, waits = 0;

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
		return usage_of(find_command("sync"));
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	for (;;) {
		lrc = sr_client_sync(x->c, &o);
		/* a watch started while the relay is down waits for it (the library's own
		 * retries have already backed off); the first wait says so, once */
		if (!o.watch || lrc != SR_ENETWORK || stop_flag)
			break;
		if (!waits++)
			fprintf(stderr, "syncrelay: %s; waiting for the relay (Ctrl-C stops)\n", sr_client_errmsg(x->c));
		sleep_unless_stopped(2);
		if (stop_flag) {
			lrc = 0;
			break;
		}
	}
	cli_sync_warnings(x->c);
	if (lrc)
		return lib_fail(x->c, lrc);
	if (x->json && !sr_client_status(x->c, &x->out))
		puts(x->out);
	return 0;
}

static int run_status(struct ctx *x, int argc, char **argv)
{
	int lrc;

	if (argc)
		return usage_of(find_command("status"));
	if ((lrc = sr_client_status(x->c, &x->out)))
		return lib_fail(x->c, lrc);
	if (x->json)
		puts(x->out);
	else
		print_status_text(x->out);
	cli_sync_warnings(x->c);
	return 0;
}

static int run_verify(struct ctx *x, int argc, char **argv)
{
	int repair = take_flag(&argc, argv, "--repair"), lrc;

	if (argc)
		return usage_of(find_command("verify"));
	lrc = sr_client_verify(x->c, &x->out, repair);
	if (x->out)
		x->json ? (void)puts(x->out) : print_verify_text(x->out);
	if (lrc == SR_EMISMATCH)
		return fail("verify: %s", sr_client_errmsg(x->c));
	if (lrc)
		return lib_fail(x->c, lrc);
	return 0;
}

static int run_index(struct ctx *x, int argc, char **argv)
{
	if (argc != 1)
		return usage_of(find_command("index"));
	return cmd_index(x->c, argv[0], x->json, !x->json && isatty(2));
}

static int run_rejected(struct ctx *x, int argc, char **argv)
{
	return cmd_rejected(x->c, argc, argv, x->json);
}

/* Removes a store that a failed command created, with SQLite's side files. */
static void remove_store(const char *store)
{
	static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
	char path[4096];
	size_t i;

	for (i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
		snprintf(path, sizeof path, "%s%s", store, sfx[i]);
		unlink(path);
	}
}

int main(int argc, char **argv)
{
	const struct command *k;
	struct ctx x = {0};
	const char *store;
	int rc, lrc, existed, i;

	argc--;
	argv++;
	store = take_opt(&argc, argv, "--store");
	x.json = take_flag(&argc, argv, "--json");
	if (argc < 1) {
		print_overview(stderr);
		return 2;
	}
	if (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h")) {
		print_overview(stdout);
		return 0;
	}
	if (!strcmp(argv[0], "--version") || !strcmp(argv[0], "version")) {
		printf("syncrelay %s\n", SYNCRELAY_VERSION);
		return 0;
	}
	k = find_command(argv[0]);
	if (!k) {
		fail("unknown command \"%s\" (see syncrelay --help)", argv[0]);
		return 2;
	}
	argc--;
	argv++;
	/* COMMAND --help anywhere among its arguments: its usage, nothing run */
	for (i = 0; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			print_command(stdout, k);
			return 0;
		}
	if (k->store == STORE_NONE)
		return k->run(&x, argc, argv);

	if (!store)
		store = getenv("SYNCRELAY_STORE");
	if (!store || !*store)
		return fail("no store: give --store PATH or set SYNCRELAY_STORE");
	x.store = store;
	existed = access(store, F_OK) == 0;
	if (k->store == STORE_EXISTING && !existed)
		return fail("no store at \"%s\" (run enroll first)", store);
	if ((lrc = sr_client_open(&x.c, store))) {
		rc = fail("%s", sr_client_errmsg(NULL));
		if (k->store == STORE_CREATE && !existed)
			remove_store(store);
		return rc;
	}
	sr_client_set_progress(x.c, !x.json && isatty(2));
	rc = k->run(&x, argc, argv);
	free(x.out);
	sr_client_free(x.c);
	if (rc && k->store == STORE_CREATE && !existed)
		remove_store(store);
	return rc;
}
