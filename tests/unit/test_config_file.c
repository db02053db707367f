/* The relay's config file (NAME = value lines, environment names) and SIGHUP reload: what
 * is live changes, what is not stays and is logged, a bad file changes nothing. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char path[64];
static FILE *errf;

static void write_conf(const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert(f);
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
}

static const char *err_text(void)
{
	static char buf[4096];
	ssize_t n;

	fflush(stderr);
	n = pread(fileno(errf), buf, sizeof buf - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static void setup(void)
{
	static const char *const names[] = {"DATABASE_URL", "SYNCRELAY_CONFIG", "SYNCRELAY_LOG_LEVEL",
					    "SYNCRELAY_THREADS", "SYNCRELAY_MAX_BATCH", "SYNCRELAY_TLS_CERT",
					    "SYNCRELAY_TLS_KEY", "SYNCRELAY_ADMIN_TOKEN", "SYNCRELAY_LOG_FORMAT"};
	size_t i;
	int fd;

	for (i = 0; i < sizeof names / sizeof names[0]; i++)
		unsetenv(names[i]);
	snprintf(path, sizeof path, "/tmp/syncrelay-conf-XXXXXX");
	fd = mkstemp(path);
	cr_assert(fd >= 0);
	close(fd);
	errf = tmpfile();
	cr_assert(errf);
	fflush(stderr);
	cr_assert_neq(dup2(fileno(errf), STDERR_FILENO), -1);
	cr_assert_not_null(freopen("/dev/null", "w", stdout));
}

static void teardown(void)
{
	unlink(path);
	fclose(errf);
}

TestSuite(cfgfile, .init = setup, .fini = teardown);

#define LOAD(...)                                                                                      \
	({                                                                                             \
		char *argv_[] = {"syncrelayd", __VA_ARGS__, NULL};                                     \
		config_load((int)(sizeof argv_ / sizeof argv_[0]) - 1, argv_);                         \
	})

Test(cfgfile, file_values_under_env_and_flags)
{
	write_conf("# a comment\n\n  DATABASE_URL = \"host=/tmp dbname=f\"  \nSYNCRELAY_THREADS=3\n"
		   "SYNCRELAY_MAX_BATCH = 7\nSYNCRELAY_LOG_LEVEL = 1\n");
	setenv("SYNCRELAY_MAX_BATCH", "9", 1);
	cr_assert_eq(LOAD("--config", path, "--log-level=3"), 0, "%s", err_text());
	cr_expect_str_eq(cfg.database_url, "host=/tmp dbname=f", "quotes and spaces around the value go");
	cr_expect_eq(cfg.threads, 3, "the file sets what nothing else does");
	cr_expect_eq(cfg.max_batch, 9, "the environment wins over the file");
	cr_expect_eq(cfg.log_level, 3, "a flag wins over the file");
	setenv("SYNCRELAY_CONFIG", path, 1);
	cr_assert_eq(LOAD("--log-level=3"), 0, "%s", err_text());
	cr_expect_eq(cfg.threads, 3, "SYNCRELAY_CONFIG names the file too");
}

Test(cfgfile, errors_name_file_and_line)
{
	write_conf("DATABASE_URL = x\nSYNCRELAY_THREADS = many\n");
	cr_expect_eq(LOAD("--config", path), -1);
	cr_expect(strstr(err_text(), ":2: invalid value \"many\" for --threads"), "%s", err_text());
	write_conf("DATABASE_URL = x\n\nSYNCRELAY_NOPE = 1\n");
	cr_expect_eq(LOAD("--config", path), -1);
	cr_expect(strstr(err_text(), ":3: unknown setting \"SYNCRELAY_NOPE\""), "%s", err_text());
	write_conf("just words\n");
	cr_expect_eq(LOAD("--config", path), -1);
	cr_expect(strstr(err_text(), ":1: expected NAME = value"), "%s", err_text());
	write_conf("SYNCRELAY_CONFIG = /etc/other\n");
	cr_expect_eq(LOAD("--config", path), -1);
	cr_expect(strstr(err_text(), "cannot be set in a config file"), "%s", err_text());
	cr_expect_eq(LOAD("--config", "/nonexistent/syncrelay.conf"), -1);
	cr_expect(strstr(err_text(), "could not read the config file \"/nonexistent/syncrelay.conf\": No such file"),
		  "%s", err_text());
	write_conf("DATABASE_URL = x\nSYNCRELAY_TLS_CERT = /c.pem\n");
	cr_expect_eq(LOAD("--config", path), -1, "a certificate without a key is refused");
	cr_expect(strstr(err_text(), "TLS needs both"), "%s", err_text());
	write_conf("DATABASE_URL = x\nSYNCRELAY_LOG_FORMAT = xml\n");
	cr_expect_eq(LOAD("--config", path), -1);
}

Test(cfgfile, reload_applies_live_settings_only)
{
	char buf[64];

	write_conf("DATABASE_URL = x\nSYNCRELAY_LOG_LEVEL = 2\nSYNCRELAY_THREADS = 4\nSYNCRELAY_MAX_BATCH = 100\n"
		   "SYNCRELAY_ADMIN_TOKEN = old\n");
	cr_assert_eq(LOAD("--config", path), 0, "%s", err_text());
	write_conf("DATABASE_URL = x\nSYNCRELAY_LOG_LEVEL = 3\nSYNCRELAY_THREADS = 9\nSYNCRELAY_MAX_BATCH = 50\n"
		   "SYNCRELAY_ADMIN_TOKEN = new\n");
	cr_assert_eq(config_reload(), 3, "log level, max batch and admin token change live; %s", err_text());
	cr_expect_eq(cfg.log_level, 3);
	cr_expect_eq(cfg.max_batch, 50);
	cr_expect_str_eq(cfg.admin_token, "new");
	cr_expect_eq(cfg.threads, 4, "threads need a restart");
	cr_expect(strstr(err_text(), "reload: SYNCRELAY_MAX_BATCH changed from 100 to 50"), "%s", err_text());
	cr_expect(strstr(err_text(), "reload: SYNCRELAY_THREADS changed to 9 but needs a restart; still 4"), "%s",
		  err_text());
	cr_expect(strstr(err_text(), "reload: SYNCRELAY_ADMIN_TOKEN changed"), "%s", err_text());
	cr_expect(!strstr(err_text(), "new"), "a secret's value is never logged: %s", err_text());
	/* a broken file changes nothing */
	write_conf("DATABASE_URL = x\nSYNCRELAY_LOG_LEVEL = 9\nSYNCRELAY_MAX_BATCH = 1\n");
	cr_expect_eq(config_reload(), -1);
	cr_expect_eq(cfg.max_batch, 50);
	cr_expect_eq(cfg.log_level, 3);
	cr_expect(strstr(err_text(), "reload: configuration not changed:"), "%s", err_text());
	cr_expect_str_eq(config_show("SYNCRELAY_MAX_BATCH", buf, sizeof buf), "50");
	cr_expect_str_eq(config_show("SYNCRELAY_ADMIN_TOKEN", buf, sizeof buf), "(set)");
	cr_expect_null(config_show("NOPE", buf, sizeof buf));
}
