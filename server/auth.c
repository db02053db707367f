/*
 * Authentication. Tokens are 256 random bits shown once; the relay stores only their
 * SHA-256, in the small global tokens table looked up by hash (the time of an index probe
 * says something about a hash, nothing about a token). The admin token comes from the
 * environment and its digest is compared in constant time.
 */
#include "auth.h"

#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "config.h"
#include "db.h"
#include "log.h"
#include "longpoll.h"
#include "notify.h"
#include "ratelimit.h"
#include "routes.h"

int auth_token_new(char out[TOKEN_HEX + 4])
{
	unsigned char r[TOKEN_HEX / 2];
	size_t got = 0, i;

	while (got < sizeof r) {
		ssize_t n = getrandom(r + got, sizeof r - got, 0);
		if (n < 0)
			return -1;
		got += (size_t)n;
	}
	memcpy(out, "sr_", 3);
	for (i = 0; i < sizeof r; i++)
		snprintf(out + 3 + 2 * i, 3, "%02x", r[i]);
	return 0;
}

void auth_token_hash(char out[65], const char *token)
{
	unsigned char md[32];
	unsigned int len = 0, i;

	EVP_Digest(token, strlen(token), md, &len, EVP_sha256(), NULL);
	for (i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Compares digests, not the tokens: neither the admin token's length nor where a guess
 * first differs shows in the time taken. */
static int is_admin(const char *token)
{
	char want[65], got[65];

	if (!cfg.admin_token || !*cfg.admin_token)
		return 0;
	auth_token_hash(want, cfg.admin_token);
	auth_token_hash(got, token);
	return CRYPTO_memcmp(want, got, 64) == 0;
}

/*
 * Device tokens looked up recently, so that the polls one push wakes (each authenticated again
 * when it resumes) and a device's run of requests do not each query the tokens table. An
 * entry holds only while its library's wake generation (longpoll.h) has not moved since the
 * generation was read, before the lookup that filled it: a revocation commits, then notifies
 * the library on every relay, which moves the generation, so a held poll woken by it is
 * looked up afresh and answered 401 as before. Used only while the LISTEN connection is up
 * (without it the generation does not move), for at most ACACHE_TTL_S, and cleared by a
 * revocation on this relay (before its NOTIFY comes back).
 */
#define ACACHE_SLOTS 1024
#define ACACHE_TTL_S 2.0

struct acache {
	char hash[65];
	char lib[SR_UUID_LEN + 1];
	char dev[SR_UUID_LEN + 1];
	uint64_t gen;
	double at;
};

static pthread_mutex_t alock = PTHREAD_MUTEX_INITIALIZER;
static struct acache acache[ACACHE_SLOTS];

static struct acache *acache_slot(const char *hash)
{
	return &acache[sr_fnv1a64(hash, 64) % ACACHE_SLOTS];
}

static int acache_get(const char *hash, const char *lib, uint64_t gen, struct auth *a)
{
	struct acache *e = acache_slot(hash);
	int hit;

	pthread_mutex_lock(&alock);
	hit = e->hash[0] && !strcmp(e->hash, hash) && !strcmp(e->lib, lib) && e->gen == gen &&
	      now_mono() - e->at < ACACHE_TTL_S;
	if (hit) {
		a->kind = AUTH_DEVICE;
		memcpy(a->library_id, e->lib, sizeof e->lib);
		memcpy(a->device_id, e->dev, sizeof e->dev);
	}
	pthread_mutex_unlock(&alock);
	return hit;
}

static void acache_put(const char *hash, uint64_t gen, const struct auth *a)
{
	struct acache *e = acache_slot(hash);

	pthread_mutex_lock(&alock);
	memcpy(e->hash, hash, sizeof e->hash);
	snprintf(e->lib, sizeof e->lib, "%s", a->library_id);
	snprintf(e->dev, sizeof e->dev, "%s", a->device_id);
	e->gen = gen;
	e->at = now_mono();
	pthread_mutex_unlock(&alock);
}

void auth_cache_clear(void)
{
	pthread_mutex_lock(&alock);
	memset(acache, 0, sizeof acache);
	pthread_mutex_unlock(&alock);
}

/* Looks the token up; fills a->kind etc. Returns 0 found, 1 unknown, -1 database failure, 2
 * when it is not cached and no_db forbids the query. lib is the library in the path ("" for
 * none): only its device tokens are cached. */
static int lookup(struct auth *a, const char *lib, const char *token, int no_db, struct reply *out)
{
	char hash[65];
	const char *params[2] = {hash, NULL};
	int cache = lib[0] && notify_connected();
	uint64_t gen = cache ? poll_gen(lib) : 0; /* before the lookup: see above */
	PGconn *c;
	PGresult *res = NULL;
	int rc = -1;

	auth_token_hash(hash, token);
	if (cache && acache_get(hash, lib, gen, a))
		return 0; /* seen within the TTL: its last_seen is fresh */
	if (no_db)
		return 2;
	if (!(c = db_acquire())) {
		db_problem(out, NULL, NULL);
		return -1;
	}
	res = db_exec(c, ST_TOKEN_LOOKUP, params);
	if (!db_ok(res)) {
		db_problem(out, c, res);
		goto cleanup;
	}
	rc = 1;
	if (PQntuples(res) == 1) {
		a->kind = !strcmp(PQgetvalue(res, 0, 0), "join") ? AUTH_JOIN : AUTH_DEVICE;
		snprintf(a->library_id, sizeof a->library_id, "%s", PQgetvalue(res, 0, 1));
		snprintf(a->device_id, sizeof a->device_id, "%s", PQgetvalue(res, 0, 2));
		rc = 0;
		if (a->kind == AUTH_DEVICE) {
			/* throttled in SQL: at most one write per device every few seconds */
			const char *p2[2] = {a->library_id, a->device_id};
			PQclear(res);
			res = db_exec(c, ST_DEVICE_SEEN, p2);
			if (cache && !strcmp(a->library_id, lib))
				acache_put(hash, gen, a);
		}
	}
cleanup:
	PQclear(res);
	db_release(c);
	return rc;
}

int auth_check(struct req *r, struct reply *out)
{
	const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
	const char *token;
	int allowed = r->route->auth;
	int rc, wait;

	if (!h || strncasecmp(h, "Bearer ", 7) || !*(token = h + 7)) {
		reply_problem(out, 401, "unauthorized", "send \"Authorization: Bearer <token>\"");
		return -1;
	}
	if (is_admin(token)) {
		r->auth.kind = AUTH_ADMIN;
		if (allowed & AUTH_ADMIN)
			return 0;
		reply_problem(out, 403, "forbidden", "the admin token cannot do this; use a device token");
		return -1;
	}
	rc = lookup(&r->auth, r->lib, token, r->no_db, out);
	if (rc == 2)
		return -2;
	if (rc < 0)
		return -1;
	if (rc > 0) {
		reply_problem(out, 401, "unauthorized", "the token is unknown or revoked");
		return -1;
	}
	if (r->lib[0] && strcmp(r->lib, r->auth.library_id)) {
		reply_problem(out, 403, "wrong-library", "the token belongs to another library");
		return -1;
	}
	if (!(allowed & r->auth.kind)) {
		reply_problem(out, 403, "forbidden", "a %s token cannot do this",
			      r->auth.kind == AUTH_JOIN ? "join" : "device");
		return -1;
	}
	/* a resumed long-poll is the same request again, not a new one */
	if (r->auth.kind == AUTH_DEVICE && r->poll_state == POLL_NONE &&
	    (wait = ratelimit_take(r->auth.device_id, now_mono())) > 0) {
		out->retry_after = wait;
		reply_problem(out, 429, "rate-limited", "this device makes more than %lld requests a second; retry in %d s",
			      (long long)cfg.rate_per_s, wait);
		return -1;
	}
	return 0;
}
