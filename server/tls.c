/*
 * TLS certificate store. libmicrohttpd (built with GnuTLS) asks for the certificate through
 * a GnuTLS retrieve callback at every handshake, so a SIGHUP can swap the pair under a live
 * daemon: new handshakes get the new pair, sessions already set up keep the one they got.
 * GnuTLS does not free what the callback returns, so every pair loaded stays allocated until
 * tls_free() at exit (a few kilobytes per reload).
 */
#include "tls.h"

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CHAIN 16

struct pair {
	gnutls_pcert_st certs[MAX_CHAIN];
	unsigned ncerts;
	gnutls_privkey_t key;
	struct pair *older;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct pair *current; /* newest; older ones chained behind it */

static void pair_free(struct pair *p)
{
	unsigned i;

	for (i = 0; i < p->ncerts; i++)
		gnutls_pcert_deinit(&p->certs[i]);
	if (p->key)
		gnutls_privkey_deinit(p->key);
	free(p);
}

/* 1 when the certificate's public key is the key's. */
static int key_matches(gnutls_pcert_st *cert, gnutls_privkey_t key)
{
	unsigned char a[64], b[64];
	size_t na = sizeof a, nb = sizeof b;
	gnutls_pubkey_t pub = NULL;
	int ok = 0;

	if (gnutls_pubkey_init(&pub) < 0)
		return 0;
	if (gnutls_pubkey_import_privkey(pub, key, 0, 0) >= 0 &&
	    gnutls_pubkey_get_key_id(pub, GNUTLS_KEYID_USE_SHA256, a, &na) >= 0 &&
	    gnutls_pubkey_get_key_id(cert->pubkey, GNUTLS_KEYID_USE_SHA256, b, &nb) >= 0)
		ok = na == nb && !memcmp(a, b, na);
	gnutls_pubkey_deinit(pub);
	return ok;
}

int tls_load(const char *cert_path, const char *key_path, char *err, size_t n)
{
	gnutls_datum_t cdata = {NULL, 0}, kdata = {NULL, 0};
	struct pair *p = calloc(1, sizeof *p);
	int rc = -1, g;

	if (!p) {
		snprintf(err, n, "out of memory");
		return -1;
	}
	if ((g = gnutls_load_file(cert_path, &cdata)) < 0) {
		snprintf(err, n, "could not read the TLS certificate \"%s\": %s", cert_path, gnutls_strerror(g));
		goto cleanup;
	}
	if ((g = gnutls_load_file(key_path, &kdata)) < 0) {
		snprintf(err, n, "could not read the TLS key \"%s\": %s", key_path, gnutls_strerror(g));
		goto cleanup;
	}
	p->ncerts = MAX_CHAIN;
	if ((g = gnutls_pcert_list_import_x509_raw(p->certs, &p->ncerts, &cdata, GNUTLS_X509_FMT_PEM, 0)) < 0 ||
	    !p->ncerts) {
		p->ncerts = 0;
		snprintf(err, n, "\"%s\" holds no PEM certificate: %s", cert_path, g < 0 ? gnutls_strerror(g) : "empty");
		goto cleanup;
	}
	if ((g = gnutls_privkey_init(&p->key)) < 0 ||
	    (g = gnutls_privkey_import_x509_raw(p->key, &kdata, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
		snprintf(err, n, "\"%s\" holds no PEM private key: %s", key_path, gnutls_strerror(g));
		goto cleanup;
	}
	if (!key_matches(&p->certs[0], p->key)) {
		snprintf(err, n, "the key \"%s\" does not belong to the certificate \"%s\"", key_path, cert_path);
		goto cleanup;
	}
	pthread_mutex_lock(&mu);
	p->older = current;
	current = p;
	pthread_mutex_unlock(&mu);
	p = NULL;
	rc = 0;
cleanup:
	gnutls_free(cdata.data);
	gnutls_free(kdata.data);
	if (p)
		pair_free(p);
	return rc;
}

int tls_enabled(void)
{
	int on;

	pthread_mutex_lock(&mu);
	on = current != NULL;
	pthread_mutex_unlock(&mu);
	return on;
}

static int retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_rdn, int nreqs,
		    const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length, gnutls_pcert_st **pcert,
		    unsigned int *pcert_length, gnutls_privkey_t *privkey)
{
	(void)session;
	(void)req_ca_rdn;
	(void)nreqs;
	(void)pk_algos;
	(void)pk_algos_length;
	pthread_mutex_lock(&mu);
	if (!current) {
		pthread_mutex_unlock(&mu);
		return -1;
	}
	*pcert = current->certs;
	*pcert_length = current->ncerts;
	*privkey = current->key;
	pthread_mutex_unlock(&mu);
	return 0;
}

gnutls_certificate_retrieve_function2 *tls_cert_callback(void)
{
	return retrieve;
}

void tls_free(void)
{
	struct pair *p, *next;

	pthread_mutex_lock(&mu);
	p = current;
	current = NULL;
	pthread_mutex_unlock(&mu);
	for (; p; p = next) {
		next = p->older;
		pair_free(p);
	}
}
