/* Library schemas: parse, extend-only check, topological order. */
#include "schema_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_model(const void *a, const void *b)
{
	return strcmp(((const struct sm_model *)a)->name, ((const struct sm_model *)b)->name);
}

static int cmp_ref(const void *a, const void *b)
{
	return strcmp(((const struct sm_ref *)a)->field, ((const struct sm_ref *)b)->field);
}

void sm_free(struct sm_schema *s)
{
	int i, j;

	if (!s)
		return;
	for (i = 0; i < s->n; i++) {
		for (j = 0; j < s->models[i].nrefs; j++) {
			free(s->models[i].refs[j].field);
			free(s->models[i].refs[j].model);
		}
		free(s->models[i].refs);
	}
	free(s->models);
	s->models = NULL;
	s->n = 0;
}

const struct sm_model *sm_find(const struct sm_schema *s, const char *name)
{
	struct sm_model key;

	if (!name || strlen(name) > SR_MODEL_MAX || !s->n)
		return NULL;
	snprintf(key.name, sizeof key.name, "%s", name);
	return bsearch(&key, s->models, (size_t)s->n, sizeof key, cmp_model);
}

static int parse_refs(struct sm_model *m, const json_t *refs, char *err, size_t errlen)
{
	size_t i;

	if (!refs || json_is_null(refs))
		return SM_OK;
	if (!json_is_array(refs)) {
		snprintf(err, errlen, "model \"%s\": \"refs\" must be an array", m->name);
		return SM_BAD;
	}
	m->refs = calloc(json_array_size(refs) + 1, sizeof *m->refs);
	if (!m->refs)
		return SM_BAD;
	for (i = 0; i < json_array_size(refs); i++) {
		const json_t *r = json_array_get(refs, i);
		const char *field = json_string_value(json_object_get(r, "field"));
		const char *model = json_string_value(json_object_get(r, "model"));

		if (!field || !*field || strlen(field) > 255) {
			snprintf(err, errlen, "model \"%s\": ref %zu needs a \"field\" of 1 to 255 bytes",
				 m->name, i);
			return SM_BAD;
		}
		if (!sr_model_name_valid(model)) {
			snprintf(err, errlen, "model \"%s\": ref \"%s\" needs a valid \"model\" name",
				 m->name, field);
			return SM_BAD;
		}
		m->refs[m->nrefs].field = strdup(field);
		m->refs[m->nrefs].model = strdup(model);
		m->nrefs++;
	}
	qsort(m->refs, (size_t)m->nrefs, sizeof *m->refs, cmp_ref);
	for (i = 1; i < (size_t)m->nrefs; i++)
		if (!strcmp(m->refs[i].field, m->refs[i - 1].field)) {
			snprintf(err, errlen, "model \"%s\": field \"%s\" has two refs", m->name,
				 m->refs[i].field);
			return SM_BAD;
		}
	return SM_OK;
}

int sm_parse(struct sm_schema *out, const json_t *models, char *err, size_t errlen)
{
	size_t i;
	int j, rc;

	memset(out, 0, sizeof *out);
	if (!json_is_array(models)) {
		snprintf(err, errlen, "\"models\" must be an array");
		return SM_BAD;
	}
	out->models = calloc(json_array_size(models) + 1, sizeof *out->models);
	if (!out->models)
		return SM_BAD;
	for (i = 0; i < json_array_size(models); i++) {
		const json_t *m = json_array_get(models, i);
		const char *name = json_string_value(json_object_get(m, "name"));
		const char *kind = json_string_value(json_object_get(m, "kind"));
		struct sm_model *sm = &out->models[out->n];

		if (!json_is_object(m) || !sr_model_name_valid(name)) {
			snprintf(err, errlen, "model %zu needs a \"name\" matching ^[a-z][a-z0-9_]{0,62}$", i);
			return SM_BAD;
		}
		snprintf(sm->name, sizeof sm->name, "%s", name);
		out->n++;
		if (!kind || (strcmp(kind, "device_owned") && strcmp(kind, "shared"))) {
			snprintf(err, errlen, "model \"%s\": \"kind\" must be \"device_owned\" or \"shared\"", name);
			return SM_BAD;
		}
		sm->device_owned = !strcmp(kind, "device_owned");
		rc = parse_refs(sm, json_object_get(m, "refs"), err, errlen);
		if (rc)
			return rc;
	}
	qsort(out->models, (size_t)out->n, sizeof *out->models, cmp_model);
	for (j = 1; j < out->n; j++)
		if (!strcmp(out->models[j].name, out->models[j - 1].name)) {
			snprintf(err, errlen, "model \"%s\" is declared twice", out->models[j].name);
			return SM_BAD;
		}
	for (j = 0; j < out->n; j++) {
		int k;
		for (k = 0; k < out->models[j].nrefs; k++)
			if (!sm_find(out, out->models[j].refs[k].model)) {
				snprintf(err, errlen, "model \"%s\": ref \"%s\" names undeclared model \"%s\"",
					 out->models[j].name, out->models[j].refs[k].field,
					 out->models[j].refs[k].model);
				return SM_UNKNOWN_MODEL;
			}
	}
	return SM_OK;
}

int sm_order(const struct sm_schema *s, int *order, char *err, size_t errlen)
{
	char *placed = calloc((size_t)s->n + 1, 1);
	int done = 0, i, k;

	if (!placed)
		return SM_BAD;
	while (done < s->n) {
		int pick = -1;

		/* models are sorted by name, so the first ready one breaks ties by name */
		for (i = 0; i < s->n && pick < 0; i++) {
			int ready = !placed[i];
			for (k = 0; ready && k < s->models[i].nrefs; k++) {
				const char *t = s->models[i].refs[k].model;
				const struct sm_model *tm = sm_find(s, t);
				if (strcmp(t, s->models[i].name) && tm && !placed[tm - s->models])
					ready = 0;
			}
			if (ready)
				pick = i;
		}
		if (pick < 0) {
			size_t len = 0;
			len += (size_t)snprintf(err, errlen, "references form a cycle among:");
			for (i = 0; i < s->n && len < errlen; i++)
				if (!placed[i])
					len += (size_t)snprintf(err + len, errlen - len, " \"%s\"", s->models[i].name);
			free(placed);
			return SM_CYCLE;
		}
		placed[pick] = 1;
		order[done++] = pick;
	}
	free(placed);
	return SM_OK;
}

int sm_check_extends(const struct sm_schema *prev, const struct sm_schema *next, int *same,
		     char *err, size_t errlen)
{
	int i, k;

	*same = prev->n == next->n;
	for (i = 0; i < prev->n; i++) {
		const struct sm_model *pm = &prev->models[i];
		const struct sm_model *nm = sm_find(next, pm->name);

		if (!nm) {
			snprintf(err, errlen, "model \"%s\" cannot be removed", pm->name);
			return SM_CONFLICT;
		}
		if (nm->device_owned != pm->device_owned) {
			snprintf(err, errlen, "model \"%s\" cannot change its kind", pm->name);
			return SM_CONFLICT;
		}
		if (nm->nrefs != pm->nrefs)
			*same = 0;
		for (k = 0; k < pm->nrefs; k++) {
			const struct sm_ref *pr = &pm->refs[k];
			const struct sm_ref *nr =
				nm->nrefs ? bsearch(pr, nm->refs, (size_t)nm->nrefs, sizeof *pr, cmp_ref) : NULL;

			if (!nr) {
				snprintf(err, errlen, "ref \"%s.%s\" cannot be removed", pm->name, pr->field);
				return SM_CONFLICT;
			}
			if (strcmp(nr->model, pr->model)) {
				snprintf(err, errlen, "ref \"%s.%s\" cannot change its target", pm->name,
					 pr->field);
				return SM_CONFLICT;
			}
		}
	}
	return SM_OK;
}

json_t *sm_models_json(const struct sm_schema *s)
{
	json_t *arr = json_array();
	int i, k;

	for (i = 0; i < s->n; i++) {
		json_t *refs = json_array();
		for (k = 0; k < s->models[i].nrefs; k++)
			json_array_append_new(refs, json_pack("{s:s, s:s}", "field", s->models[i].refs[k].field,
							      "model", s->models[i].refs[k].model));
		json_array_append_new(arr, json_pack("{s:s, s:s, s:o}", "name", s->models[i].name, "kind",
						     s->models[i].device_owned ? "device_owned" : "shared",
						     "refs", refs));
	}
	return arr;
}

json_t *sm_order_json(const struct sm_schema *s)
{
	int *order = calloc((size_t)s->n + 1, sizeof *order);
	char err[16];
	json_t *arr = NULL;
	int i;

	if (order && sm_order(s, order, err, sizeof err) == SM_OK) {
		arr = json_array();
		for (i = 0; i < s->n; i++)
			json_array_append_new(arr, json_string(s->models[order[i]].name));
	}
	free(order);
	return arr;
}
