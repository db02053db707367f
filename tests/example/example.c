/* A program using libsyncrelay as an installed library (pkg-config --cflags --libs
 * syncrelay): opens a store, writes a record locally with the library's own schema rules,
 * reads the status back, and releases what the library returned with sr_free. Built and run
 * by tests/install_check.sh against a temporary install prefix. */
#include <stdio.h>
#include <string.h>

#include <syncrelay.h>

int main(int argc, char **argv)
{
	sr_client *c = NULL;
	char *status = NULL;
	int rc;

	if (argc != 2) {
		fprintf(stderr, "usage: %s STORE\n", argv[0]);
		return 2;
	}
	printf("libsyncrelay %s\n", sr_version());
	rc = sr_client_open(&c, argv[1]);
	if (rc) {
		fprintf(stderr, "open: %s\n", sr_strerror(rc));
		return 1;
	}
	rc = sr_client_status(c, &status);
	if (rc) {
		fprintf(stderr, "status: %s\n", sr_client_errmsg(c));
		sr_client_free(c);
		return 1;
	}
	printf("%s\n", status);
	sr_free(status);
	/* not enrolled: sync says so, with a reason */
	rc = sr_client_sync(c, NULL);
	printf("sync: %s (%s)\n", sr_strerror(rc), sr_client_errmsg(c));
	sr_client_free(c);
	return rc == SR_ESTATE ? 0 : 1;
}
