/*
 * End-to-end: the device store holds the device token, so the CLI creates it (and SQLite its
 * -wal and -shm files) readable by its owner only, whatever the umask.
 */
#include "cli.h"

Test(store, created_readable_by_its_owner_only, .timeout = 120)
{
	const char *suffix[3] = {"", "-wal", "-shm"};
	struct e2e e;
	char a[512];
	mode_t old = umask(022);
	int i, seen = 0;

	e2e_start(&e);
	e2e_enroll(&e, "A", a, sizeof a);
	e2e_schema(&e, a);
	cli_do(a, 60, "put", "location", "00000000-0000-4000-8000-000000000001", "{}");
	for (i = 0; i < 3; i++) {
		char p[600];
		struct stat st;

		snprintf(p, sizeof p, "%s%s", a, suffix[i]);
		if (stat(p, &st) != 0)
			continue;
		seen++;
		cr_assert_eq(st.st_mode & 0777, 0600, "%s has mode %03o under umask 022", p, st.st_mode & 0777);
	}
	cr_assert(seen >= 1, "no store file at %s", a);
	umask(old);
	e2e_finish(&e);
}
