/*
 * Unit tests of how a migration file is cut into statements (server/migrate.c): each is sent
 * on its own, since Citus refuses DDL on distributed tables in a multi-statement string.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate.h"

/* Splits sql and joins the statements with '|' into out. Returns their count. */
static int split(const char *sql, char *out, size_t n)
{
	const char *pos = sql, *s;
	size_t len, used = 0;
	int count = 0;

	out[0] = '\0';
	while ((s = migrate_next_statement(&pos, &len))) {
		cr_assert(used + len + 2 < n, "statements do not fit the buffer");
		if (count++)
			out[used++] = '|';
		memcpy(out + used, s, len);
		used += len;
		out[used] = '\0';
	}
	cr_assert_eq(*pos, '\0', "the splitter stopped before the end: \"%s\"", pos);
	return count;
}

Test(migrate_split, statements_and_their_terminators)
{
	char out[512];

	cr_assert_eq(split("CREATE TABLE a (x int);\nCREATE INDEX i ON a (x);\n", out, sizeof out), 2);
	cr_assert_str_eq(out, "CREATE TABLE a (x int)|CREATE INDEX i ON a (x)");
	cr_assert_eq(split("SELECT 1", out, sizeof out), 1, "a last statement needs no ';'");
	cr_assert_str_eq(out, "SELECT 1");
	cr_assert_eq(split(" ;; \n", out, sizeof out), 0);
	cr_assert_eq(split("", out, sizeof out), 0);
}

Test(migrate_split, comments_are_not_statements)
{
	char out[512];

	cr_assert_eq(split("-- header; with a semicolon\n-- another\nSELECT 1; -- trailing; note\n"
			   "/* block; /* nested; */ still comment; */\n", out, sizeof out), 1);
	cr_assert_str_eq(out, "SELECT 1");
	cr_assert_eq(split("SELECT 1 -- inside; the statement\n + 2;", out, sizeof out), 1);
	cr_assert_str_eq(out, "SELECT 1 -- inside; the statement\n + 2");
}

Test(migrate_split, semicolons_inside_quotes)
{
	char out[512];

	cr_assert_eq(split("INSERT INTO t VALUES ('a;b', 'it''s; here');SELECT \"odd;name\" FROM t;", out,
			   sizeof out), 2);
	cr_assert_str_eq(out, "INSERT INTO t VALUES ('a;b', 'it''s; here')|SELECT \"odd;name\" FROM t");
	cr_assert_eq(split("SELECT E'x\\'; y';SELECT 2", out, sizeof out), 2);
	cr_assert_str_eq(out, "SELECT E'x\\'; y'|SELECT 2");
	cr_assert_eq(split("SELECT '-- not a comment;';SELECT 3", out, sizeof out), 2);
	cr_assert_str_eq(out, "SELECT '-- not a comment;'|SELECT 3");
}

Test(migrate_split, dollar_quotes_and_parameters)
{
	char out[512];

	cr_assert_eq(split("CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $x$ $body$ LANGUAGE sql;"
			   "DO $$ BEGIN PERFORM 1; END $$;", out, sizeof out), 2);
	cr_assert_str_eq(out, "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $x$ $body$ LANGUAGE sql|"
			      "DO $$ BEGIN PERFORM 1; END $$");
	cr_assert_eq(split("SELECT $1; SELECT a$b$ FROM t; SELECT 4", out, sizeof out), 3,
		     "$1 and a$b$ start no dollar quote");
	cr_assert_str_eq(out, "SELECT $1|SELECT a$b$ FROM t|SELECT 4");
}

Test(migrate_split, the_shipped_migrations)
{
	char *out = malloc(65536);
	int i, total = 0;

	cr_assert(out);
	cr_assert(migrations_count >= 3);
	for (i = 0; i < migrations_count; i++) {
		int n = split(migrations[i].sql, out, 65536);

		cr_assert_gt(n, 0, "%s has no statement", migrations[i].name);
		cr_assert(!strncmp(out, "CREATE ", 7) || !strncmp(out, "ALTER ", 6) || !strncmp(out, "DROP ", 5),
			  "%s: the first statement starts with a comment or stray text: %.40s",
			  migrations[i].name, out);
		total += n;
	}
	/* 001: 7 tables and 3 indexes; 002: drop and create; 003: two columns */
	cr_assert_eq(split(migrations[0].sql, out, 65536), 10);
	cr_assert_eq(split(migrations[1].sql, out, 65536), 2);
	cr_assert_eq(split(migrations[2].sql, out, 65536), 2);
	cr_assert_geq(total, 14);
	free(out);
}
