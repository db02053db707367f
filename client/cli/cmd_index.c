/*
 * `syncrelay index DIR`: the reference scenario's indexer, like a file manager's. It writes
 * one location, every directory and file as an entry (no content_id yet), then file by file
 * the content_identity (id derived from the file's bytes, so equal bytes share one on every
 * device) and the entry update that links it, syncing as it goes. Ids are derived from the
 * device, the location path and the relative path, so re-indexing an unchanged tree writes
 * nothing and a changed tree writes only the differences.
 */
#define _XOPEN_SOURCE 700
#include "cmd_index.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

/* writes per local transaction and push: the relay's cost is mostly per batch (a transaction,
 * the digest rows it touches), so larger batches index several times faster than 500 did */
#define SYNC_EVERY 5000

static const char *const ref_schema =
	"{\"models\":[{\"name\":\"location\",\"kind\":\"device_owned\"},"
	"{\"name\":\"entry\",\"kind\":\"device_owned\",\"refs\":["
	"{\"field\":\"content_id\",\"model\":\"content_identity\"},"
	"{\"field\":\"parent_id\",\"model\":\"entry\"}]},"
	"{\"name\":\"content_identity\",\"kind\":\"shared\"}]}";

struct item {
	char *rel; /* path relative to the root */
	char id[SR_UUID_LEN + 1];
	char parent[SR_UUID_LEN + 1]; /* "" at the top level */
	int is_dir;
	long long size, mtime;
	int base_written;
};

static struct {
	struct item *v;
	size_t n, cap;
	size_t root_len;
	char device[SR_UUID_LEN + 1];
	char location[SR_UUID_LEN + 1];
} walk;

/* A UUID (version 8: custom) from two FNV-1a 64 hashes of key. */
static void uuid_from(char out[SR_UUID_LEN + 1], uint64_t h1, uint64_t h2)
{
	unsigned char b[16];
	int i;

	for (i = 0; i < 8; i++) {
		b[i] = (unsigned char)(h1 >> (56 - 8 * i));
		b[8 + i] = (unsigned char)(h2 >> (56 - 8 * i));
	}
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x80);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, SR_UUID_LEN + 1,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
		 b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

#define SECOND_BASIS 0x84222325cbf29ce4ULL

static void id_of(char out[SR_UUID_LEN + 1], const char *kind, const char *rel)
{
	uint64_t h1 = SR_FNV_OFFSET, h2 = SECOND_BASIS;
	const char *parts[4] = {kind, walk.device, walk.location, rel};
	int i;

	for (i = 0; i < 4; i++) {
		h1 = sr_fnv1a64_update(sr_fnv1a64_update(h1, parts[i], strlen(parts[i])), "\n", 1);
		h2 = sr_fnv1a64_update(sr_fnv1a64_update(h2, parts[i], strlen(parts[i])), "\n", 1);
	}
	uuid_from(out, h1, h2);
}

static int on_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	struct item *it;
	const char *rel = path + walk.root_len;
	char *slash;

	if (ftw->level == 0 || (flag != FTW_F && flag != FTW_D))
		return 0; /* the root is the location; links and unreadable entries are skipped */
	if (flag == FTW_F && !S_ISREG(st->st_mode))
		return 0;
	while (*rel == '/')
		rel++;
	if (walk.n == walk.cap) {
		size_t cap = walk.cap ? 2 * walk.cap : 1024;
		struct item *p = realloc(walk.v, cap * sizeof *p);
		if (!p)
			return -1;
		walk.v = p;
		walk.cap = cap;
	}
	it = &walk.v[walk.n];
	memset(it, 0, sizeof *it);
	it->rel = strdup(rel);
	if (!it->rel)
		return -1;
	it->is_dir = flag == FTW_D;
	it->size = it->is_dir ? 0 : (long long)st->st_size;
	it->mtime = (long long)st->st_mtime;
	id_of(it->id, "entry", rel);
	slash = strrchr(it->rel, '/');
	if (slash) {
		*slash = '\0';
		id_of(it->parent, "entry", it->rel);
		*slash = '/';
	}
	walk.n++;
	return 0;
}

static const char *base_name(const char *rel)
{
	const char *s = strrchr(rel, '/');

	return s ? s + 1 : rel;
}

/* An entry's data as canonical text (keys in byte order, as the library stores it), so it
 * is compared with the stored text and written without a JSON round trip. cid: its
 * content_id, or NULL. NULL when out of memory. */
static char *entry_text(const struct item *it, const char *cid)
{
	sr_buf b = {0};

	sr_buf_putc(&b, '{');
	if (cid)
		sr_buf_printf(&b, "\"content_id\":\"%s\",", cid);
	sr_buf_printf(&b, "\"kind\":\"%s\",\"location_id\":\"%s\",\"modified\":%lld,\"name\":",
		      it->is_dir ? "dir" : "file", walk.location, it->mtime);
	sr_buf_put_jstr(&b, base_name(it->rel));
	if (it->parent[0])
		sr_buf_printf(&b, ",\"parent_id\":\"%s\"", it->parent);
	sr_buf_printf(&b, ",\"size\":%lld}", it->size);
	return sr_buf_steal(&b);
}

/* Hashes a file's bytes into a content id and its hex digest. */
static int content_of(const char *path, char id[SR_UUID_LEN + 1], char hex[33])
{
	unsigned char buf[65536];
	uint64_t h1 = SR_FNV_OFFSET, h2 = SECOND_BASIS;
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	while ((n = read(fd, buf, sizeof buf)) > 0) {
		h1 = sr_fnv1a64_update(h1, buf, (size_t)n);
		h2 = sr_fnv1a64_update(h2, buf, (size_t)n);
	}
	close(fd);
	if (n < 0)
		return -1;
	uuid_from(id, h1, h2);
	snprintf(hex, 33, "%016llx%016llx", (unsigned long long)h1, (unsigned long long)h2);
	return 0;
}

struct ctx {
	sr_client *c;
	long written, deleted, since_sync;
	int progress;
};

/* Writes go in batches of SYNC_EVERY, each one local transaction, pushed as soon as it is
 * committed: watchers see the index grow. */
static int flush(struct ctx *x)
{
	int rc = sr_client_write_commit(x->c);

	x->since_sync = 0;
	if (!rc)
		rc = sr_client_sync(x->c, NULL);
	return rc ? rc : sr_client_write_begin(x->c);
}

static int counted(struct ctx *x)
{
	x->written++;
	return ++x->since_sync >= SYNC_EVERY ? flush(x) : 0;
}

/* Writes want (canonical text) to (model, id) unless the record already holds exactly it. */
static int put_if_changed(struct ctx *x, const char *model, const char *id, const char *want)
{
	char *have = NULL;
	int rc;

	if (!want)
		return SR_ENOMEM;
	if (sr_client_get(x->c, &have, model, id) == 0 && !strcmp(have, want)) {
		free(have);
		return 0;
	}
	free(have);
	rc = sr_client_put(x->c, model, id, want);
	return rc ? rc : counted(x);
}

/* 1 when the stored entry, content_id aside, is what the walk found; *linked when it has a
 * content_id. Stored data is canonical text: content_id, when present, is its first key. */
static int entry_state(sr_client *c, const struct item *it, int *linked)
{
	static const char key[] = "{\"content_id\":\"";
	char *have = NULL, *want = NULL, cid[SR_UUID_LEN + 1] = "";
	int same;

	*linked = 0;
	if (sr_client_get(c, &have, "entry", it->id))
		return 0;
	if (!strncmp(have, key, sizeof key - 1)) {
		const char *s = have + sizeof key - 1, *e = strchr(s, '"');

		if (e && e - s == SR_UUID_LEN) {
			memcpy(cid, s, SR_UUID_LEN);
			*linked = 1;
		}
	}
	want = entry_text(it, *linked ? cid : NULL);
	same = want && !strcmp(have, want);
	free(want);
	free(have);
	return same;
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

struct removal {
	char (*seen)[SR_UUID_LEN + 1];
	size_t nseen;
	char (*gone)[SR_UUID_LEN + 1];
	size_t ngone, cap;
};

static int find_gone(void *arg, const char *record_id, const char *data)
{
	struct removal *r = arg;
	json_t *d = json_loads(data, 0, NULL);
	const char *loc = json_string_value(json_object_get(d, "location_id"));
	int mine = loc && !strcmp(loc, walk.location);

	json_decref(d);
	if (!mine || bsearch(record_id, r->seen, r->nseen, sizeof *r->seen, cmp_id))
		return 0;
	if (r->ngone == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 64;
		void *p = realloc(r->gone, cap * sizeof *r->gone);
		if (!p)
			return -1;
		r->gone = p;
		r->cap = cap;
	}
	memcpy(r->gone[r->ngone++], record_id, SR_UUID_LEN + 1);
	return 0;
}

static void show(struct ctx *x, const char *phase, size_t done, size_t total)
{
	if (x->progress && (done % 200 == 0 || done == total))
		fprintf(stderr, "\rindex %s: %zu/%zu%s", phase, done, total, done == total ? "\n" : "   ");
}

int cmd_index(sr_client *c, const char *dir, int json, int progress_on)
{
	char root[PATH_MAX], *text = NULL, path[PATH_MAX + 1024];
	struct ctx x = {.c = c, .progress = progress_on};
	struct removal rm = {0};
	json_t *st, *loc;
	size_t i, files = 0;
	int rc;

	if (!realpath(dir, root))
		return fprintf(stderr, "syncrelay: could not index \"%s\": %s\n", dir, strerror(errno)), 1;
	if ((rc = sr_client_status(c, &text)))
		goto libfail;
	st = json_loads(text, 0, NULL);
	free(text);
	text = NULL;
	if (!json_is_string(json_object_get(st, "device_id"))) {
		json_decref(st);
		return fprintf(stderr, "syncrelay: this store is not enrolled (run enroll first)\n"), 1;
	}
	snprintf(walk.device, sizeof walk.device, "%s", json_string_value(json_object_get(st, "device_id")));
	json_decref(st);
	/* the library needs the reference schema; set it when it has none */
	if ((rc = sr_client_sync(c, NULL)) || (rc = sr_client_schema_get(c, &text)))
		goto libfail;
	st = json_loads(text, 0, NULL);
	free(text);
	text = NULL;
	if (json_integer_value(json_object_get(st, "version")) == 0 && (rc = sr_client_schema_set(c, ref_schema))) {
		json_decref(st);
		goto libfail;
	}
	json_decref(st);

	walk.n = 0;
	walk.root_len = strlen(root);
	walk.location[0] = '\0';
	id_of(walk.location, "location", root);
	if (nftw(root, on_entry, 64, FTW_PHYS) != 0)
		return fprintf(stderr, "syncrelay: could not walk \"%s\": %s\n", root, strerror(errno)), 1;

	if ((rc = sr_client_write_begin(c)))
		goto libfail;
	loc = json_pack("{s:s, s:s}", "name", base_name(root), "path", root);
	text = json_dumps(loc, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(loc);
	rc = put_if_changed(&x, "location", walk.location, text);
	free(text);
	text = NULL;
	if (rc)
		goto libfail;
	/* every directory and file first, without content */
	for (i = 0; i < walk.n; i++) {
		struct item *it = &walk.v[i];
		int linked;

		if (!entry_state(c, it, &linked)) {
			char *want = entry_text(it, NULL);
			rc = want ? sr_client_put(c, "entry", it->id, want) : SR_ENOMEM;
			free(want);
			it->base_written = 1;
			if (!rc)
				rc = counted(&x);
		} else if (!linked && !it->is_dir) {
			it->base_written = 1; /* indexed before but never linked */
		}
		files += !it->is_dir;
		show(&x, "entries", i + 1, walk.n);
		if (rc)
			goto libfail;
	}
	/* then, file by file, the content identity and the link */
	for (i = 0; i < walk.n; i++) {
		struct item *it = &walk.v[i];
		char cid[SR_UUID_LEN + 1], hex[33], ci[128], *linked;

		if (it->is_dir || !it->base_written)
			continue;
		snprintf(path, sizeof path, "%s/%s", root, it->rel);
		if (content_of(path, cid, hex))
			continue; /* vanished or unreadable since the walk: its entry stays unlinked */
		snprintf(ci, sizeof ci, "{\"hash\":\"%s\",\"size\":%lld}", hex, it->size);
		rc = put_if_changed(&x, "content_identity", cid, ci);
		linked = entry_text(it, cid);
		if (!rc)
			rc = put_if_changed(&x, "entry", it->id, linked);
		free(linked);
		show(&x, "content", i + 1, walk.n);
		if (rc)
			goto libfail;
	}
	/* entries of this location that are gone from the tree */
	rm.seen = calloc(walk.n + 1, sizeof *rm.seen);
	for (i = 0; rm.seen && i < walk.n; i++)
		memcpy(rm.seen[i], walk.v[i].id, SR_UUID_LEN + 1);
	rm.nseen = walk.n;
	if (rm.seen)
		qsort(rm.seen, rm.nseen, sizeof *rm.seen, cmp_id);
	if (!rm.seen || (rc = sr_client_records(c, "entry", find_gone, &rm)))
		goto libfail;
	for (i = 0; i < rm.ngone && !rc; i++) {
		rc = sr_client_delete(c, "entry", rm.gone[i]);
		x.deleted++;
	}
	if (rc || (rc = sr_client_write_commit(c)) || (rc = sr_client_sync(c, NULL)))
		goto libfail;
	if (json)
		printf("{\"location_id\":\"%s\",\"entries\":%zu,\"files\":%zu,\"written\":%ld,\"deleted\":%ld}\n",
		       walk.location, walk.n, files, x.written, x.deleted);
	else
		printf("indexed %zu entries (%zu files): %ld written, %ld deleted\n", walk.n, files, x.written,
		       x.deleted);
	rc = 0;
	goto cleanup;
libfail:
	fprintf(stderr, "syncrelay: index: %s\n", sr_client_errmsg(c)[0] ? sr_client_errmsg(c) : sr_strerror(rc));
	sr_client_write_rollback(c);
	rc = 1;
cleanup:
	for (i = 0; i < walk.n; i++)
		free(walk.v[i].rel);
	free(walk.v);
	walk.v = NULL;
	walk.n = walk.cap = 0;
	free(rm.seen);
	free(rm.gone);
	return rc;
}
