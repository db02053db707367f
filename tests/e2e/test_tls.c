/*
 * TLS end to end: a CA and a server certificate made by the test (openssl), the relay
 * serving https, the CLI syncing with the CA file and refusing without it (one line, the
 * reason), and a certificate swapped under the running relay with SIGHUP while a long-poll
 * is held: the poll is answered, new handshakes present the new certificate.
 */
#include "cli.h"

/* dir/NAME-ca.pem, dir/NAME.pem (CN localhost, SAN 127.0.0.1) and dir/NAME.key. */
static void make_pki(const char *dir, const char *name)
{
	char cmd[4096];
	int rc;

	snprintf(cmd, sizeof cmd,
		 "cd '%s' && openssl req -x509 -newkey rsa:2048 -nodes -keyout %s-ca.key -out %s-ca.pem -days 2 "
		 "-subj '/CN=syncrelay test CA %s' && "
		 "openssl req -newkey rsa:2048 -nodes -keyout %s.key -out %s.csr -subj /CN=localhost && "
		 "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > %s.ext && "
		 "openssl x509 -req -in %s.csr -CA %s-ca.pem -CAkey %s-ca.key -CAcreateserial -out %s.pem -days 2 "
		 "-extfile %s.ext",
		 dir, name, name, name, name, name, name, name, name, name, name, name);
	{
		char full[4200];
		snprintf(full, sizeof full, "( %s ) >/dev/null 2>&1", cmd);
		rc = system(full);
	}
	cr_assert_eq(rc, 0, "openssl could not make the test certificates (%s) in %s", name, dir);
}

static void copy_file(const char *from, const char *to)
{
	char *text = NULL;
	FILE *f = fopen(from, "r");
	sr_buf b = {0};
	char buf[4096];
	size_t got;

	cr_assert(f, "could not read %s", from);
	while ((got = fread(buf, 1, sizeof buf, f)))
		sr_buf_put(&b, buf, got);
	fclose(f);
	sr_buf_putc(&b, '\0');
	text = b.p;
	e2e_write_file(to, text);
	free(text);
}

/* Waits until the relay's log holds needle. */
static void wait_log(const struct relay *r, const char *needle, double timeout)
{
	double deadline = h_mono() + timeout;

	for (;;) {
		FILE *f = fopen(r->log, "r");
		sr_buf b = {0};
		char buf[4096];
		size_t got;
		int found;

		if (f) {
			while ((got = fread(buf, 1, sizeof buf, f)))
				sr_buf_put(&b, buf, got);
			fclose(f);
		}
		sr_buf_putc(&b, '\0');
		found = strstr(b.p, needle) != NULL;
		free(b.p);
		if (found)
			return;
		cr_assert(h_mono() < deadline, "the relay did not log \"%s\" within %.0f s; see %s", needle, timeout, r->log);
		cli_sleep(0.02);
	}
}

struct tls_world {
	struct e2e e;
	char ca[600], ca2[600], cert[600], key[600];
	char env_cert[700], env_key[700];
};

static void tls_start(struct tls_world *w)
{
	const char *env[3];
	char p[600];

	memset(w, 0, sizeof *w);
	snprintf(w->e.dir, sizeof w->e.dir, "/tmp/syncrelay-tls-XXXXXX");
	cr_assert(mkdtemp(w->e.dir));
	make_pki(w->e.dir, "a");
	e2e_path(&w->e, w->ca, sizeof w->ca, "a-ca.pem");
	e2e_path(&w->e, w->cert, sizeof w->cert, "served.pem");
	e2e_path(&w->e, w->key, sizeof w->key, "served.key");
	e2e_path(&w->e, p, sizeof p, "a.pem");
	copy_file(p, w->cert);
	e2e_path(&w->e, p, sizeof p, "a.key");
	copy_file(p, w->key);
	snprintf(w->env_cert, sizeof w->env_cert, "SYNCRELAY_TLS_CERT=%s", w->cert);
	snprintf(w->env_key, sizeof w->env_key, "SYNCRELAY_TLS_KEY=%s", w->key);
	env[0] = w->env_cert;
	env[1] = w->env_key;
	env[2] = NULL;
	h_relay_start(&w->e.r, NULL, env);
	cr_assert(!strncmp(w->e.r.url, "https://", 8), "the relay does not serve https: %s", w->e.r.url);
	h_cainfo = w->ca;
	h_library(&w->e.r, &w->e.l);
	e2e_path(&w->e, p, sizeof p, "schema.json");
	e2e_write_file(p, E2E_SCHEMA);
}

static void tls_finish(struct tls_world *w)
{
	e2e_finish(&w->e);
	h_cainfo = NULL;
}

Test(tls, cli_syncs_over_https_with_the_ca_file)
{
	struct tls_world w;
	struct cli c;
	char a[600], b[600], schema[600];
	json_t *st;

	tls_start(&w);
	e2e_path(&w.e, a, sizeof a, "A.db");
	e2e_path(&w.e, b, sizeof b, "B.db");
	e2e_path(&w.e, schema, sizeof schema, "schema.json");

	/* without the CA: refused at once, one line naming the certificate, no store left */
	cli_run(&c, b, 60, "enroll", "--relay", w.e.r.url, "--library", w.e.l.id, "--join-token", w.e.l.join);
	cr_assert_eq(c.status, 1, "enroll over https without the CA exited %d; stderr: %s", c.status, c.err);
	cr_assert(strstr(c.err, "TLS certificate is not trusted") && strstr(c.err, "--ca-file"),
		  "the refusal does not say why or what to do: %s", c.err);
	cr_assert_eq(strchr(c.err, '\n'), c.err + strlen(c.err) - 1, "the refusal is not one line: %s", c.err);
	cr_assert(c.seconds < 5, "an untrusted certificate was retried: %.1f s", c.seconds);
	cr_assert_eq(access(b, F_OK), -1, "the failed enroll left %s", b);
	cr_log_info("enroll without the CA refused in %.3f s: %s", c.seconds, c.err);
	cli_free(&c);

	/* with it: enroll, schema, put, sync, and the relay has the change */
	cli_do(a, 60, "enroll", "--relay", w.e.r.url, "--library", w.e.l.id, "--join-token", w.e.l.join, "--ca-file",
	       w.ca);
	cli_do(a, 60, "schema", "set", schema);
	cli_do(a, 60, "put", "location", "8f0d5c1e-2b7a-4c3d-9e4f-5a6b7c8d9e0f", "{\"name\":\"tls\"}");
	cli_ok(&c, a, 60, "sync");
	cr_assert(!strstr(c.err, "warning"), "sync over https warned: %s", c.err);
	cli_free(&c);
	cr_assert_eq(h_lib_head(&w.e.r, &w.e.l), 1, "the change pushed over https is not on the relay");
	st = e2e_status(a);
	cr_assert_eq(e2e_jint(st, "head", NULL), 1);
	json_decref(st);

	/* SYNCRELAY_CA_FILE serves as well, for a store enrolled without --ca-file */
	setenv("SYNCRELAY_CA_FILE", w.ca, 1);
	cli_ok(&c, b, 60, "enroll", "--relay", w.e.r.url, "--library", w.e.l.id, "--join-token", w.e.l.join);
	cli_free(&c);
	cli_do(b, 60, "sync");
	unsetenv("SYNCRELAY_CA_FILE");
	{
		char *got = e2e_get(b, "location", "8f0d5c1e-2b7a-4c3d-9e4f-5a6b7c8d9e0f");
		cr_assert_str_eq(got, "{\"name\":\"tls\"}");
		free(got);
	}
	/* and without either, B's next sync is refused for the certificate */
	cli_run(&c, b, 60, "sync");
	cr_assert_eq(c.status, 1, "sync without any CA exited %d: %s", c.status, c.err);
	cr_assert(strstr(c.err, "TLS certificate is not trusted"), "%s", c.err);
	cli_free(&c);
	tls_finish(&w);
}

Test(tls, certificate_swapped_on_sighup_keeps_held_polls)
{
	struct tls_world w;
	struct dev d1, d2;
	struct h_call poll;
	struct resp p;
	char p2[600], ca_b[600];
	long long head;

	tls_start(&w);
	h_device(&w.e.r, &w.e.l, &d1);
	h_device(&w.e.r, &w.e.l, &d2);
	h_schema_ref(&w.e.r, &w.e.l, &d1);
	head = h_lib_head(&w.e.r, &w.e.l);
	h_call_start(&poll, &w.e.r, d2.token, "/v1/libraries/%s/changes?since=%lld&wait=30", w.e.l.id, head);
	h_wait_held(&w.e.r, 1, 1, 20);

	/* a new pair, from another CA, written over the served files, and SIGHUP */
	make_pki(w.e.dir, "b");
	e2e_path(&w.e, p2, sizeof p2, "b.pem");
	copy_file(p2, w.cert);
	e2e_path(&w.e, p2, sizeof p2, "b.key");
	copy_file(p2, w.key);
	e2e_path(&w.e, ca_b, sizeof ca_b, "b-ca.pem");
	cr_assert_eq(kill(w.e.r.pid, SIGHUP), 0);
	wait_log(&w.e.r, "SIGHUP: TLS certificate loaded", 20);

	/* new handshakes present the new certificate: the old CA no longer verifies it */
	cr_assert_eq(h_xhttp(NULL, "GET", (sprintf(p2, "%s/healthz", w.e.r.url), p2), NULL, NULL, 10, &p), -1,
		     "a handshake after the swap still verified against the old CA");
	cr_log_info("old CA after the swap: %s", p.err);
	h_resp_free(&p);
	h_cainfo = ca_b;
	cr_assert_eq(kill(w.e.r.pid, 0), 0, "the relay died on SIGHUP");
	cr_assert_eq(h_metric(&w.e.r, "syncrelay_longpolls_held"), 1, "the held poll was dropped by the swap");

	/* the poll held across the swap is answered by the next push */
	h_push_ok(&w.e.r, &w.e.l, &d1, h_batch(&d1, h_now_ms(), 0, 1), 1, 0);
	h_call_join(&poll, h_mono() + 20, "the poll held across the certificate swap");
	cr_assert_eq(poll.resp.status, 200, "held poll: %ld %s", poll.resp.status, poll.resp.body);
	cr_assert_eq(json_array_size(json_object_get(poll.resp.json, "changes")), 1, "held poll: %s", poll.resp.body);
	h_resp_free(&poll.resp);
	tls_finish(&w);
}
