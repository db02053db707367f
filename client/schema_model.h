/*
 * Library schemas: validation, merging of a later PUT into the stored schema, and the
 * topological order of models by their references. Pure logic, no I/O.
 */
#ifndef SR_SCHEMA_MODEL_H
#define SR_SCHEMA_MODEL_H

#include <stddef.h>
#include <jansson.h>

#include "syncrelay_codec.h"

struct sm_ref {
	char *field;
	char *model;
};

struct sm_model {
	char name[SR_MODEL_MAX + 1];
	int device_owned;
	struct sm_ref *refs; /* sorted by field */
	int nrefs;
};

struct sm_schema {
	struct sm_model *models; /* sorted by name */
	int n;
};

enum sm_err { SM_OK = 0, SM_BAD = -1, SM_UNKNOWN_MODEL = -2, SM_CYCLE = -3, SM_CONFLICT = -4 };

/* Parses a "models" array. SM_BAD for malformed input, SM_UNKNOWN_MODEL when a ref names
 * a model the array lacks. err gets a one-line reason. out is sm_free()d by the caller. */
int sm_parse(struct sm_schema *out, const json_t *models, char *err, size_t errlen);
/* Topological order (referenced models first, self-references ignored, ties by name)
 * as indexes into s->models; order must hold s->n ints. SM_CYCLE names the models. */
int sm_order(const struct sm_schema *s, int *order, char *err, size_t errlen);
/* Checks that next only adds models or refs to prev. *same is set when they are equal. */
int sm_check_extends(const struct sm_schema *prev, const struct sm_schema *next, int *same,
		     char *err, size_t errlen);
const struct sm_model *sm_find(const struct sm_schema *s, const char *name);
json_t *sm_models_json(const struct sm_schema *s);
/* The order as a JSON array of names; NULL on a cycle. */
json_t *sm_order_json(const struct sm_schema *s);
void sm_free(struct sm_schema *s);

#endif
