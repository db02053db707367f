/* `syncrelay rejected`: list, retry or drop the changes the relay refused for good. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cmd_rejected.h"

static int fail(sr_client *c, int rc)
{
	fprintf(stderr, "syncrelay: %s\n", sr_client_errmsg(c)[0] ? sr_client_errmsg(c) : sr_strerror(rc));
	return 1;
}

static void print_list(const char *text)
{
	json_t *j = json_loads(text, 0, NULL), *a = json_object_get(j, "rejected"), *r;
	size_t i;

	if (!json_array_size(a))
		printf("no rejected changes\n");
	json_array_foreach(a, i, r)
		printf("%lld  %s %s %s  %s %lld %s: %s\n", (long long)json_integer_value(json_object_get(r, "id")),
		       json_string_value(json_object_get(r, "op")), json_string_value(json_object_get(r, "model")),
		       json_string_value(json_object_get(r, "record_id")), json_string_value(json_object_get(r, "hlc")),
		       (long long)json_integer_value(json_object_get(r, "status")),
		       json_string_value(json_object_get(r, "code")), json_string_value(json_object_get(r, "detail")));
	json_decref(j);
}

/* "all" is 0; otherwise a positive id. -1 when neither. */
static long long parse_id(const char *s)
{
	char *end = NULL;
	long long v;

	if (!strcmp(s, "all"))
		return 0;
	v = strtoll(s, &end, 10);
	return *s && !*end && v > 0 ? v : -1;
}

int cmd_rejected(sr_client *c, int argc, char **argv, int json)
{
	char *out = NULL;
	long n = 0;
	long long id;
	int lrc, retry;

	if (argc == 0 || (argc == 1 && !strcmp(argv[0], "list"))) {
		if ((lrc = sr_client_rejected_list(c, &out)))
			return fail(c, lrc);
		json ? (void)puts(out) : print_list(out);
		free(out);
		return 0;
	}
	if (argc != 2 || (strcmp(argv[0], "retry") && strcmp(argv[0], "drop"))) {
		fprintf(stderr, "usage: syncrelay rejected [list] | rejected retry ID|all | rejected drop ID|all\n");
		return 2;
	}
	if ((id = parse_id(argv[1])) < 0) {
		fprintf(stderr, "syncrelay: \"%s\" is not a rejected change id (a positive number, or all)\n", argv[1]);
		return 2;
	}
	retry = !strcmp(argv[0], "retry");
	lrc = retry ? sr_client_rejected_retry(c, &n, id) : sr_client_rejected_drop(c, &n, id);
	if (lrc)
		return fail(c, lrc);
	if (json)
		printf("{\"%s\":%ld}\n", retry ? "retried" : "dropped", n);
	else
		printf(retry ? "%ld change(s) back in the outbox\n"
			     : "%ld change(s) dropped (run \"syncrelay verify --repair\" to take the relay's versions)\n",
		       n);
	return 0;
}

void cli_sync_warnings(sr_client *c)
{
	long long off = 0, lim = 0;
	long n = sr_client_rejected(c);

	if (!sr_client_clock_offset(c, &off, &lim) && lim > 0 && (off > lim || -off > lim))
		fprintf(stderr,
			"syncrelay: warning: this device's clock is %.1f s %s the relay's (the relay accepts %.1f s);"
			" changes stamped ahead wait in the outbox until the relay's clock reaches them\n",
			(double)(off > 0 ? off : -off) / 1000.0, off > 0 ? "ahead of" : "behind", (double)lim / 1000.0);
	if (n > 0)
		fprintf(stderr, "syncrelay: warning: %ld local change(s) refused by the relay for good are kept aside"
				" (see \"syncrelay rejected\")\n", n);
}
