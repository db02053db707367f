/* The client's transport: the one-time warning for a token sent over plain http:// to a
 * host that is not loopback (and none for https:// or loopback), and a CA file that must
 * exist. No relay: the hosts are .invalid names (or a closed loopback port), refused fast. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static FILE *errf;

static void setup(void)
{
	errf = tmpfile();
	cr_assert(errf);
	fflush(stderr);
	cr_assert_neq(dup2(fileno(errf), STDERR_FILENO), -1);
}

static void teardown(void)
{
	fclose(errf);
}

TestSuite(transport, .init = setup, .fini = teardown, .timeout = 60);

static const char *err_text(void)
{
	static char buf[4096];
	ssize_t n;

	fflush(stderr);
	n = pread(fileno(errf), buf, sizeof buf - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static int count(const char *hay, const char *needle)
{
	int n = 0;

	for (; (hay = strstr(hay, needle)); hay++)
		n++;
	return n;
}

/* One call to relay with a token; it fails (no such host), which is not what is tested. */
static void call(sr_client *c, const char *relay)
{
	snprintf(c->relay, sizeof c->relay, "%s", relay);
	snprintf(c->token, sizeof c->token, "sr_0123");
	cr_assert_eq(relay_call(c, "GET", "/v1/libraries", NULL, 5, NULL), SR_ENETWORK);
}

Test(transport, plain_http_to_another_host_warns_once)
{
	sr_client *c;

	cr_assert_eq(sr_client_open(&c, ":memory:"), 0);
	call(c, "http://relay.example.invalid:9");
	call(c, "http://relay.example.invalid:9");
	cr_assert_eq(count(err_text(), "warning: sending the device token over plain http://"), 1, "%s", err_text());
	cr_assert(strstr(err_text(), "relay.example.invalid"), "%s", err_text());
	sr_client_free(c);
}

Test(transport, no_warning_for_https_or_loopback)
{
	sr_client *c;

	cr_assert_eq(sr_client_open(&c, ":memory:"), 0);
	call(c, "https://relay.example.invalid:9");
	call(c, "http://127.0.0.1:9");
	call(c, "http://localhost:9");
	cr_assert_eq(count(err_text(), "warning"), 0, "%s", err_text());
	sr_client_free(c);
}

Test(transport, ca_file_must_exist)
{
	sr_client *c;

	cr_assert_eq(sr_client_open(&c, ":memory:"), 0);
	cr_assert_eq(sr_client_set_ca_file(c, "/nonexistent/ca.pem"), SR_EINVAL);
	cr_assert(strstr(sr_client_errmsg(c), "could not read the CA file \"/nonexistent/ca.pem\""), "%s",
		  sr_client_errmsg(c));
	cr_assert_eq(sr_client_set_ca_file(c, "/etc/passwd"), 0);
	cr_assert_eq(sr_client_set_ca_file(c, NULL), 0);
	sr_client_free(c);
}
