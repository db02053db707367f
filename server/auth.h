/* Bearer tokens: generation, hashing, and the check each route runs before its handler. */
#ifndef SR_AUTH_H
#define SR_AUTH_H

#include "http.h"

#define TOKEN_HEX 64 /* 256 random bits, hex */

/* Writes a fresh random token ("sr_" + 64 hex digits) into out[68]. 0 on success. */
int auth_token_new(char out[TOKEN_HEX + 4]);
/* Hex SHA-256 of a token into out[65]. */
void auth_token_hash(char out[65], const char *token);
/* Resolves the Authorization header against the route's allowed kinds and the {lib} in
 * the path. 0 when allowed (r->auth filled); otherwise fills a 401/403 and returns -1; -2
 * (nothing filled) when r->no_db and the token's lookup is not cached. */
int auth_check(struct req *r, struct reply *out);
/* Forgets every cached token lookup (auth.c): a token was revoked on this relay. */
void auth_cache_clear(void);

#endif
