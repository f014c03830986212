/* test.h - the tiny assertion kit every C test uses.  A failed check prints
 * file:line and the expression, and the test program exits non-zero at the
 * end (checks go on, so one run shows every failure). */
#ifndef SHOAL_TEST_H
#define SHOAL_TEST_H

#include <stdio.h>
#include <string.h>

static int test_failures;
static int test_checks;

#define CHECK(cond)                                                        \
	do {                                                               \
		test_checks++;                                             \
		if (!(cond)) {                                             \
			test_failures++;                                   \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n",       \
				__FILE__, __LINE__, #cond);                \
		}                                                          \
	} while (0)

#define CHECK_EQ_INT(a, b)                                                 \
	do {                                                               \
		long long a_ = (long long)(a), b_ = (long long)(b);        \
		test_checks++;                                             \
		if (a_ != b_) {                                            \
			test_failures++;                                   \
			fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n", \
				__FILE__, __LINE__, #a, a_, b_);           \
		}                                                          \
	} while (0)

#define CHECK_STR(a, b)                                                    \
	do {                                                               \
		const char *a_ = (a), *b_ = (b);                           \
		test_checks++;                                             \
		if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {     \
			test_failures++;                                   \
			fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", \
				__FILE__, __LINE__, #a, a_ ? a_ : "(null)", \
				b_ ? b_ : "(null)");                       \
		}                                                          \
	} while (0)

/* Runs one named test function and says so. */
#define RUN(fn)                                                            \
	do {                                                               \
		int before_ = test_failures;                               \
		fn();                                                      \
		fprintf(stderr, "%s %s\n",                                 \
			test_failures == before_ ? "ok  " : "FAIL", #fn);  \
	} while (0)

static inline int test_done(void)
{
	fprintf(stderr, "%d checks, %d failed\n", test_checks, test_failures);
	return test_failures == 0 ? 0 : 1;
}

#endif
