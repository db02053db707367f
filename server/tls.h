/* TLS for the relay: the certificate and key, loaded from files and swappable at run time
 * (SIGHUP) without restarting the daemon; each new handshake takes the current pair. */
#ifndef SR_TLS_H
#define SR_TLS_H

#include <stddef.h>
#include <gnutls/gnutls.h>
#include <gnutls/abstract.h>

/* Loads cert_path (PEM, leaf first, chain after) and key_path (PEM), checks that they belong
 * together, and makes them the pair new handshakes present. 0, or -1 with the reason in err
 * (the pair in use stays). */
int tls_load(const char *cert_path, const char *key_path, char *err, size_t n);
/* 1 once a pair is loaded. */
int tls_enabled(void);
/* The gnutls_certificate_retrieve_function2 handed to libmicrohttpd. */
gnutls_certificate_retrieve_function2 *tls_cert_callback(void);
/* Frees every pair loaded (at exit, after the daemon stopped). */
void tls_free(void);

#endif
