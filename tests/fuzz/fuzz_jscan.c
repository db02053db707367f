/*
 * libFuzzer target: the in-place scanner of relay pages (client/jscan.c) against jansson.
 * On any bytes: the canonical copy equals jansson's canonical text (or both refuse), text
 * taken as canonical is exactly jansson's output, js_document agrees with json_loads on
 * validity (the scanner is the stricter on NUL bytes), and a member walk never reads past the end.
 * run.sh links the relay's objects only: the scanner is compiled in here.
 *   tests/fuzz/run.sh jscan
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../../client/jscan.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* an exact-size copy, so the address sanitizer sees any read past the end */
	char *text = malloc(size ? size : 1);
	json_t *j;
	char *want, *got;
	int canon;

	if (!text)
		return 0;
	memcpy(text, data, size);
	j = json_loadb(text, size, 0, NULL);
	want = sr_canonical(j);
	got = js_canonical_dup(text, size);
	canon = js_canonical(text, size);
	assert((want == NULL) == (got == NULL));
	assert(!want || !strcmp(want, got));
	if (canon)
		assert(want && strlen(want) == size && !memcmp(want, text, size));
	/* what jansson reads, the scanner reads too; jansson's loadb reads a NUL byte as the end
	 * of the text, the scanner refuses it */
	if (j && !memchr(text, '\0', size))
		assert(js_document(text, text + size) == 0);
	if (js_document(text, text + size) == 0 && *text == '{') {
		struct js_iter it;
		const char *v, *vend;
		char key[16], *s = NULL;
		int r;

		assert(js_open(&it, text, text + size, '{') == 0);
		int vc = 1;

		while ((r = js_member_c(&it, key, sizeof key, &v, &vend, &vc)) == 1) {
			assert(v >= text && vend <= text + size && v < vend);
			/* the flag of the member walk is the canonical check's answer */
			assert(*v != '{' || vc == js_canonical(v, (size_t)(vend - v)));
			free(js_strdup(v, vend));
			vc = 1;
		}
		assert(r == 0);
		(void)js_get_str(text, size, "a", &s);
		free(s);
	}
	json_decref(j);
	free(want);
	free(got);
	free(text);
	return 0;
}
