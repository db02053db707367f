/*
 * libFuzzer target: the codec. UUID and HLC validation on any bytes (an HLC that parses
 * formats back to the same text), model names, and canonical JSON: canonical text parses
 * again and is its own canonical form.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "syncrelay_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	sr_hlc h;
	json_t *j;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	(void)sr_uuid_valid(text, size);
	if (sr_hlc_parse(&h, text, size) == 0) {
		char back[SR_HLC_LEN + 1];

		sr_hlc_format(back, &h);
		assert(size == SR_HLC_LEN && !memcmp(back, text, size));
		assert(sr_hlc_cmp(back, text) == 0);
	}
	(void)sr_model_name_valid(text);
	(void)sr_bucket(text);
	{
		uint64_t v;

		if (sr_hash_parse(&v, text) == 0) {
			char hex[17];

			sr_hash_hex(hex, v);
			assert(sr_hash_parse(&v, hex) == 0);
		}
	}
	j = json_loadb(text, size, JSON_REJECT_DUPLICATES, NULL);
	if (j) {
		char *c1 = sr_canonical(j), *c2;
		json_t *k;

		if (c1) {
			k = json_loads(c1, JSON_REJECT_DUPLICATES, NULL);
			assert(k);
			c2 = sr_canonical(k);
			assert(c2 && !strcmp(c1, c2));
			free(c2);
			json_decref(k);
			free(c1);
		}
		json_decref(j);
	}
	free(text);
	return 0;
}
