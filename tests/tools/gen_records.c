/* gen_records.c - writes a deterministic corpus of synthetic, messy,
 * multi-encounter clinical records and the ground truth of where each
 * encounter starts, for the encounters demo (configs/encounters) and the
 * detector tests.  Every name and number in it is made up.
 *
 *   gen_records --out DIR [--count N] [--seed S] [--source-prefix P]
 *               [--spans FILE] [--details FILE] [--departments FILE]
 *
 * writes DIR/records/rec-0001.txt ... and DIR/truth.jsonl, one compact JSON
 * object per encounter, sorted by (source, line):
 *
 *   {"source":"<P>records/rec-0001.txt","line":1,"date":"2023-04-12",
 *    "department":"Cardiology","provider":"Dr. Okafor","style":"banner"}
 *
 * The three optional files are the truth of the flagship pipeline
 * (configs/encounters/flagship.yaml), one per stage output; asking for them
 * changes nothing else.  An encounter runs from its header's first line to
 * the line before the next header, or to the end of the file; the lines
 * before the first header are the record's preamble.
 *
 *   --spans        encounters_spans.jsonl: the preamble (when not empty) and
 *                  every encounter, sorted by (source, start_line):
 *                  {"source":..,"start_line":1,"end_line":44,"kind":"preamble"}
 *                  {"source":..,"start_line":45,"end_line":170,"kind":"encounter"}
 *   --details      encounters.jsonl: every encounter with its metadata:
 *                  {"source":..,"start_line":45,"end_line":170,
 *                   "date":..,"department":..,"provider":..,"style":..,
 *                   "line_count":126}
 *   --departments  departments.csv: "department,encounters", then one row
 *                  per department (bytewise order), RFC 4180 quoting.
 *
 * The header grammar the records follow (and that detect.awk implements) is
 * written down in configs/encounters/README.md.  Each record draws from its
 * own random stream (seed, record number), so record k is the same whatever
 * --count is, and the deliberate edge cases sit in the first records so that
 * a small corpus has them all.  Record files past --count left by an
 * earlier run in DIR are removed. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#define MAX_RECORDS 9999	/* rec-%04d keeps names in sort order */
#define MAX_ENC 12		/* encounters per record */
#define MAX_BLOCK 8		/* header lines that carry the metadata */
#define HDR_MAX 256		/* bytes of one header line */
#define LINE_MAX_LEN 8192	/* bytes of one formatted body line */
#define PATH_MAX_LEN 4096

#if defined(__GNUC__)
#define PRINTF_LIKE(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define PRINTF_LIKE(fmt, args)
#endif

/* The demo split (encounters.yaml): 120 lines, 12 shared with the previous
 * chunk, so chunk k covers 0-based lines [108k, 108k + 120). */
#define DEMO_SIZE 120
#define DEMO_STEP 108

enum style { STYLE_BANNER, STYLE_LABELLED, STYLE_ADMISSION, STYLE_BRACKET,
	     NSTYLES };

static const char *const style_names[NSTYLES] = {
	"banner", "labelled", "admission", "bracket",
};

/* ---- random numbers: splitmix64, one stream per record ---- */

struct rng {
	uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
	uint64_t z;

	r->s += 0x9E3779B97F4A7C15ULL;
	z = r->s;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

/* Uniform in [0, n); n > 0. */
static long rng_below(struct rng *r, long n)
{
	return (long)(rng_next(r) % (uint64_t)n);
}

/* Uniform in [lo, hi]. */
static long rng_range(struct rng *r, long lo, long hi)
{
	if (hi <= lo)
		return lo;
	return lo + rng_below(r, hi - lo + 1);
}

static int rng_int(struct rng *r, int lo, int hi)
{
	return (int)rng_range(r, lo, hi);
}

static int chance(struct rng *r, int percent)
{
	return rng_below(r, 100) < percent;
}

#define PICK(r, arr) ((arr)[rng_below((r), (long)(sizeof(arr) / sizeof((arr)[0])))])

/* ---- vocabulary ---- */

/* No department holds '|', '(' or ')' or the word " visit ": the header
 * styles use them as separators. */
static const char *const departments[] = {
	"Cardiology", "Emergency", "ED", "Internal Medicine", "Family Medicine",
	"Neurology", "Oncology", "Orthopedics", "Obstetrics & Gynecology",
	"Ear, Nose & Throat", "Endocrinology", "Gastroenterology",
	"Pulmonology", "Nephrology", "Dermatology", "Psychiatry",
	"Urgent Care", "ICU", "Pédiatrie", "Sleep Medicine", "Ortho\\Spine",
	"Rheumatology", "Infectious Disease", "Geriatrics", "Radiology",
};

/* No provider holds '|' or " seen by ". */
static const char *const providers[] = {
	"Dr. Okafor", "Dr. Patel", "J. Smith", "Dr. Müller", "Dr. Zoë Álvarez",
	"NP R. Lindqvist", "Dr. O'Brien", "Dr. A. \"Sandy\" Kim",
	"Dr. Nguyễn Thị Lan", "PA-C M. Haddad", "Dr. Søren Håkansson",
	"Dr. Li Wei, MD", "Dr. Fatima Al-Sayed", "Dr. Okonkwo-Reyes",
	"K. Tanaka, DO", "Dr. Ingrid Vasquez", "Dr. Priya Raman",
	"Dr. Tomasz Wójcik", "Dr. Chiara Bianchi", "Dr. E. Fontaine",
	"Dr. H. Abernathy III",
};

static const char *const given_names[] = {
	"Harlow", "Quenby", "Marisol", "Tobiah", "Elspeth", "Idris", "Juniper",
	"Caspian", "Odalys", "Wendell", "Briony", "Zephyr", "Anouk", "Lazlo",
};

static const char *const family_names[] = {
	"Quimby", "Testworth", "Samplesson", "Fakename", "Placeholder",
	"Mockingham", "Dummett", "Synthia", "Notreal", "Exampleton",
};

static const char *const month_abbr[12] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

static const char *const month_full[12] = {
	"January", "February", "March", "April", "May", "June", "July",
	"August", "September", "October", "November", "December",
};

static const char *const month_upper[12] = {
	"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
	"JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
};

static const char *const dashes[] = {
	"--", "\xE2\x80\x94" /* em dash */, "-", "\xE2\x80\x93" /* en dash */,
};

static const char *const complaints[] = {
	"chest pain", "shortness of breath", "intermittent palpitations",
	"fatigue", "headache, worse in the morning", "low back pain",
	"fever and chills", "abdominal pain (RLQ)", "dizziness on standing",
	"cough × 3 weeks", "ankle swelling", "rash on forearms",
	"Ménière's-like vertigo", "poor sleep", "follow-up of HbA1c",
};

static const char *const fragments[] = {
	"Patient reports", "Pt states", "Per daughter,", "Denies",
	"No acute distress.", "Seen with interpreter (Français).",
	"Café au lait macule noted on left flank, stable.",
	"Previously naïve to statins.", "Tolerating diet.",
	"Ambulating independently.", "Sjögren syndrome per outside records.",
	"Copy-forward from prior note — please verify.",
	"Discussed risks/benefits; patient agrees with plan.",
	"Labs reviewed, see below.", "Will follow up in 2–4 weeks.",
	"ECG: NSR, rate 72, no ST changes.", "Lungs CTA bilaterally.",
	"RRR, no m/r/g.", "Abdomen soft, NT/ND.", "Neuro grossly intact.",
	"Pain 4/10 → 2/10 after acetaminophen.", "Weight ↓ 2 kg since last visit.",
	"Advised ≥150 min/week of moderate activity.",
	"Glucose log reviewed: fasting 110–140 mg/dL.",
	"Smoking: quit 2015.", "EtOH: occasional.", "Lives alone, independent ADLs.",
	"Allergies: penicillin (hives), sulfa (?).",
	"Daughter’s phone number updated in chart.",
};

static const char *const meds[] = {
	"metoprolol succinate 25 mg PO daily",
	"levothyroxine 75 µg PO qAM",
	"cyanocobalamin 1000 µg IM monthly",
	"insulin glargine 18 units SC qHS",
	"lisinopril 10 mg PO daily",
	"atorvastatin 40 mg PO qHS",
	"apixaban 5 mg PO BID",
	"fluticasone 50 µg/spray, 2 sprays each nostril daily",
	"sertraline 50 mg PO daily",
	"acetaminophen 500 mg PO q6h PRN pain (max 3 g/day)",
	"furosemide 20 mg PO daily — hold if SBP < 100",
	"omeprazole 20 mg PO daily before breakfast",
};

static const char *const lab_names[] = {
	"Na", "K", "Cl", "HCO3", "BUN", "Creat", "Glucose", "HbA1c", "TSH",
	"Hgb", "WBC", "Plt", "ALT", "AST", "LDL", "Trop I",
};

static const char *const sections[] = {
	"=== ASSESSMENT & PLAN ===", "==== LABS ====", "=== MEDICATIONS ===",
	"=== HISTORY OF PRESENT ILLNESS ===", "===== PHYSICAL EXAM =====",
	"=== END ENCOUNTER ===", "=== ENCOUNTER NOTES (continued) ===",
	"==== ENCOUNTER SUMMARY | printed 2024-01-02 ====",
};

/* ---- dates ---- */

struct date {
	int y, m, d;
};

static int days_in_month(int y, int m)
{
	static const int days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
				      30, 31 };
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : days[m - 1];
}

static void date_add(struct date *dt, int days)
{
	while (days > 0) {
		dt->d++;
		if (dt->d > days_in_month(dt->y, dt->m)) {
			dt->d = 1;
			dt->m++;
		}
		if (dt->m > 12) {
			dt->m = 1;
			dt->y++;
		}
		days--;
	}
}

static struct date random_date(struct rng *r, int y0, int y1)
{
	struct date dt;

	dt.y = rng_int(r, y0, y1);
	dt.m = rng_int(r, 1, 12);
	dt.d = rng_int(r, 1, days_in_month(dt.y, dt.m));
	return dt;
}

/* ---- output: lines with a chosen ending, counted ---- */

struct writer {
	FILE *f;
	const char *eol;	/* "\n" or "\r\n" */
	long lines;		/* lines started so far */
	uint64_t bytes;
	int open_line;		/* a line was written and awaits its eol */
	size_t line_len;	/* bytes of the open line so far */
};

static void w_put(struct writer *w, const char *s, size_t len)
{
	fwrite(s, 1, len, w->f);
	w->bytes += len;
	w->line_len += len;
}

static void w_begin(struct writer *w)
{
	if (w->open_line)
		w_put(w, w->eol, strlen(w->eol));
	w->open_line = 1;
	w->lines++;
	w->line_len = 0;
}

static void w_line(struct writer *w, const char *s)
{
	w_begin(w);
	w_put(w, s, strlen(s));
}

/* Ends the last line (unless the file must lack a final newline) and
 * closes.  Returns 0, or -1 when a write failed. */
static int w_close(struct writer *w, int final_newline)
{
	int bad;

	if (w->open_line && final_newline)
		w_put(w, w->eol, strlen(w->eol));
	bad = ferror(w->f);
	if (fclose(w->f) != 0)
		bad = 1;
	return bad ? -1 : 0;
}

/* ---- one record's plan ---- */

struct encounter {
	struct date date;
	const char *dept;
	const char *prov;
	int style;
	char block[MAX_BLOCK][HDR_MAX];	/* the header lines, as written */
	int nblock;
	int last_field;			/* block line of the last metadata */
};

struct plan {
	long lines;		/* total lines of the record */
	int nenc;
	int crlf;
	int final_newline;
	int bom;		/* UTF-8 byte order mark before line 1 */
	int at_line1;		/* first header on line 1: no preamble */
	int ends_with_header;	/* the last header block ends the file */
	int snap_pct;		/* chance a header is moved to a chunk edge */
	int straddle_pct;	/* ... and then onto the chunk's last lines */
	int tiny_pct;		/* chance of a 0-2 line body */
	int style;		/* one style for all, or -1 for a mix */
	int block_size;		/* labelled block lines, or 0 for 3-8 */
	int multiline_pct;	/* admission headers with attending below */
	int giant;		/* one 20-60 kB line somewhere */
	int last_style;		/* style of the last encounter, or -1 */
};

/* Generation state of the record being written. */
struct gen {
	struct rng rng;
	struct writer w;
	const struct plan *plan;
	struct encounter enc[MAX_ENC];
	long gap[MAX_ENC];	/* lines before header i (after block i-1) */
	long tail;		/* lines after the last block */
	int giant_left;		/* the giant line is still to be written */
	char patient[128];
	unsigned mrn;
};

/* ---- body lines ---- */

/* Writes one formatted line when the budget allows, now and then with
 * trailing blanks; returns 0 once the budget is spent. */
static int emitf(struct gen *g, long *left, const char *fmt, ...)
	PRINTF_LIKE(3, 4);

static int emitf(struct gen *g, long *left, const char *fmt, ...)
{
	static const char *const trails[] = { " ", "  ", "\t", " \t ", "   " };
	char buf[LINE_MAX_LEN];
	va_list ap;

	if (*left <= 0)
		return 0;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	w_line(&g->w, buf);
	if (chance(&g->rng, 4)) {
		const char *t = PICK(&g->rng, trails);

		w_put(&g->w, t, strlen(t));
	}
	(*left)--;
	return 1;
}

static void snip_blank(struct gen *g, long *left)
{
	static const char *const blanks[] = { "", "", "", " ", "\t", "    " };
	int n = rng_int(&g->rng, 1, 3);

	while (n-- > 0 && emitf(g, left, "%s", PICK(&g->rng, blanks)))
		;
}

/* Appends words to buf up to about width bytes. */
static void fill_words(struct gen *g, char *buf, size_t cap, size_t width)
{
	size_t len = strlen(buf);

	while (len < width && len + 200 < cap) {
		const char *f = rng_below(&g->rng, 4) == 0 ?
			PICK(&g->rng, complaints) : PICK(&g->rng, fragments);

		len += (size_t)snprintf(buf + len, cap - len, "%s%s",
					len > 0 ? " " : "", f);
	}
}

static void snip_narrative(struct gen *g, long *left)
{
	int n = rng_int(&g->rng, 2, 12);
	size_t width = (size_t)rng_int(&g->rng, 55, 110);

	while (n-- > 0) {
		char buf[LINE_MAX_LEN] = "";

		fill_words(g, buf, sizeof(buf), width);
		if (!emitf(g, left, "%s", buf))
			return;
	}
}

static void snip_long_line(struct gen *g, long *left)
{
	char buf[LINE_MAX_LEN] = "";

	fill_words(g, buf, sizeof(buf), (size_t)rng_int(&g->rng, 400, 4000));
	emitf(g, left, "%s", buf);
}

/* A pasted image: one line of tens of kilobytes. */
static void snip_giant_line(struct gen *g, long *left)
{
	static const char b64[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *head = "IMG: data:image/png;base64,";
	long n = rng_range(&g->rng, 20000, 60000);
	char chunk[64];

	if (*left <= 0)
		return;
	w_begin(&g->w);
	w_put(&g->w, head, strlen(head));
	while (n > 0) {
		size_t i, k = n < 64 ? (size_t)n : 64;

		for (i = 0; i < k; i++)
			chunk[i] = b64[rng_below(&g->rng, 64)];
		w_put(&g->w, chunk, k);
		n -= (long)k;
	}
	(*left)--;
	g->giant_left = 0;
}

static void snip_vitals(struct gen *g, long *left)
{
	struct rng *r = &g->rng;
	int sys = rng_int(r, 100, 175), dia = rng_int(r, 55, 105);
	int hr = rng_int(r, 48, 130), temp = rng_int(r, 360, 399);
	int spo2 = rng_int(r, 88, 100), wt = rng_int(r, 450, 1400);
	int ht = rng_int(r, 150, 195), bmi = rng_int(r, 180, 410);
	int rr = rng_int(r, 12, 24), pain = rng_int(r, 0, 10);

	if (emitf(g, left, "BP: %d/%d mmHg   HR: %d bpm   Temp: %d.%d °C   SpO2: %d%%",
		  sys, dia, hr, temp / 10, temp % 10, spo2) &&
	    emitf(g, left, "Wt: %d.%d kg\tHt: %d cm\tBMI %d.%d", wt / 10, wt % 10,
		  ht, bmi / 10, bmi % 10) &&
	    chance(r, 50))
		emitf(g, left, "RR %d  Pain %d/10  (vitals per RN, copied forward)",
		      rr, pain);
}

static void snip_meds(struct gen *g, long *left)
{
	static const char *const bullets[] = { "  - ", "\t- ", "* ", "  • ", "- " };
	const char *bullet = PICK(&g->rng, bullets);
	int n = rng_int(&g->rng, 2, 8);

	if (!emitf(g, left, "%s", chance(&g->rng, 50) ? "Medications:" :
		   "Current Outpatient Medications (reconciled):"))
		return;
	while (n-- > 0 && emitf(g, left, "%s%s", bullet, PICK(&g->rng, meds)))
		;
}

static void snip_labs(struct gen *g, long *left)
{
	struct rng *r = &g->rng;
	struct date dt = random_date(r, 2015, 2024);
	int n = rng_int(r, 2, 10), minute = rng_int(r, 0, 23 * 60 + 59);

	if (!emitf(g, left, "Lab\tValue\tUnits\tRef\t(collected %04d-%02d-%02d %02d:%02d)",
		   dt.y, dt.m, dt.d, minute / 60, minute % 60))
		return;
	while (n-- > 0) {
		const char *name = PICK(r, lab_names);
		int value = rng_int(r, 0, 2509), lo = rng_int(r, 0, 50);
		int hi = rng_int(r, 51, 300);
		const char *unit = chance(r, 30) ? "µmol/L" : "mg/dL";
		const char *flag = chance(r, 15) ? " H" : "";

		if (!emitf(g, left, "%s\t%d.%d\t%s\t(%d-%d)%s", name, value / 10,
			   value % 10, unit, lo, hi, flag))
			return;
	}
}

static void snip_plan(struct gen *g, long *left)
{
	int i, n = rng_int(&g->rng, 1, 5);

	if (!emitf(g, left, "%s", chance(&g->rng, 50) ? "A/P:" : "Assessment/Plan:"))
		return;
	for (i = 1; i <= n; i++) {
		const char *problem = PICK(&g->rng, complaints);
		const char *note = PICK(&g->rng, fragments);

		if (!emitf(g, left, "%d. %s — %s", i, problem, note))
			return;
	}
}

static void snip_section(struct gen *g, long *left)
{
	emitf(g, left, "%s", PICK(&g->rng, sections));
}

static void snip_signature(struct gen *g, long *left)
{
	struct date dt = random_date(&g->rng, 2015, 2024);
	const char *who = PICK(&g->rng, providers);
	int minute = rng_int(&g->rng, 0, 23 * 60 + 59);

	emitf(g, left, "Electronically signed by %s on %04d-%02d-%02d %02d:%02d",
	      who, dt.y, dt.m, dt.d, minute / 60, minute % 60);
}

static void snip_page_break(struct gen *g, long *left)
{
	int page = rng_int(&g->rng, 2, 9), pages = rng_int(&g->rng, 10, 40);

	if (emitf(g, left, "\f"))
		emitf(g, left, "Page %d of %d    %s    MRN SYN-%07u    CONFIDENTIAL (synthetic)",
		      page, pages, g->patient, g->mrn);
}

/* Timestamped lines that open like a bracket header and are not one. */
static void snip_log(struct gen *g, long *left)
{
	struct rng *r = &g->rng;
	struct date dt = random_date(r, 2015, 2024);
	int n = rng_int(r, 2, 6);

	while (n-- > 0) {
		int minute = rng_int(r, 0, 23 * 60 + 59), sys = rng_int(r, 95, 170);
		int dia = rng_int(r, 50, 100), hr = rng_int(r, 50, 120);
		const char *dash = PICK(r, dashes);
		int ok;

		if (chance(r, 70))
			ok = emitf(g, left, "[%04d-%02d-%02d %02d:%02d] BP %d/%d HR %d",
				   dt.y, dt.m, dt.d, minute / 60, minute % 60,
				   sys, dia, hr);
		else
			ok = emitf(g, left, "[%04d-%02d-%02d] Telephone encounter %s pharmacy called re: refill",
				   dt.y, dt.m, dt.d, dash);
		if (!ok)
			return;
	}
}

static void render_block(struct rng *r, struct encounter *e,
			 const struct plan *p);

/* An old header copied forward, quoted ("> ") or indented: text that
 * looks like a header and is not one. */
static void snip_copy_forward(struct gen *g, long *left)
{
	static const char *const prefixes[] = { "> ", "> ", ">", "    ", "\t",
						"> > " };
	static const char *const intros[] = {
		"--- copied from prior note ---", "Copied forward:",
		"Prior note (for reference):", "> Forwarded message from chart:",
	};
	struct rng *r = &g->rng;
	const char *prefix = PICK(r, prefixes);
	struct encounter old;
	int i;

	old.date = random_date(r, 2008, 2014);
	old.dept = PICK(r, departments);
	old.prov = PICK(r, providers);
	old.style = rng_int(r, 0, NSTYLES - 1);
	render_block(r, &old, g->plan);
	if (!emitf(g, left, "%s", PICK(r, intros)))
		return;
	for (i = 0; i < old.nblock; i++)
		if (!emitf(g, left, "%s%s", prefix, old.block[i]))
			return;
	for (i = rng_int(r, 1, 4); i > 0; i--)
		if (!emitf(g, left, "%s%s", prefix, PICK(r, fragments)))
			return;
}

/* Single lines that a loose detector would take for headers. */
static void snip_decoy(struct gen *g, long *left)
{
	struct rng *r = &g->rng;
	struct date dt = random_date(r, 2010, 2024);
	const char *dash = PICK(r, dashes);
	const char *dept = PICK(r, departments);
	const char *prov = PICK(r, providers);
	const char *mon = month_abbr[dt.m - 1];
	int phone = rng_int(r, 0, 99);

	switch (rng_int(r, 0, 9)) {
	case 0:
		emitf(g, left, "Previous visit date: %04d-%02d-%02d noted in history",
		      dt.y, dt.m, dt.d);
		break;
	case 1:
		emitf(g, left, "Next Visit Date: %02d/%02d/%04d", dt.m, dt.d, dt.y);
		break;
	case 2:
		if (emitf(g, left, "Visit Date: __/__/____") &&
		    emitf(g, left, "Department: ______________"))
			emitf(g, left, "Provider: ______________");
		break;
	case 3:
		emitf(g, left, "Visit Date: %02d/%02d/%04d (rescheduled, see below)",
		      dt.m, dt.d, dt.y);
		break;
	case 4:
		emitf(g, left, "Seen by %s in %s visit on %04d-%02d-%02d.",
		      prov, dept, dt.y, dt.m, dt.d);
		break;
	case 5:
		emitf(g, left, "ADMISSION NOTE -- see prior admission (%d %s %d)",
		      dt.d, mon, dt.y);
		break;
	case 6:
		emitf(g, left, "ADMISSION NOTE addendum %s %d %s %d (%s) attending: %s",
		      dash, dt.d, mon, dt.y, dept, prov);
		break;
	case 7:
		emitf(g, left, "Readmission note -- %d %s %d (%s) attending: %s",
		      dt.d, mon, dt.y, dept, prov);
		break;
	case 8:
		emitf(g, left, "[%04d-%02d-%02d] Lab visit %s no provider (standing order)",
		      dt.y, dt.m, dt.d, dash);
		break;
	default:
		emitf(g, left, "Referring Provider: %s   Department Phone: 555-01%02d",
		      prov, phone);
		break;
	}
}

typedef void (*snip_fn)(struct gen *, long *);

struct snip {
	snip_fn fn;
	int weight;
};

static const struct snip snips[] = {
	{ snip_narrative, 25 }, { snip_vitals, 12 }, { snip_meds, 10 },
	{ snip_labs, 8 }, { snip_blank, 12 }, { snip_section, 4 },
	{ snip_plan, 8 }, { snip_copy_forward, 6 }, { snip_decoy, 8 },
	{ snip_log, 5 }, { snip_long_line, 3 }, { snip_signature, 3 },
	{ snip_page_break, 2 },
};

static snip_fn pick_snip(struct rng *r)
{
	long total = 0, x;
	size_t i;

	for (i = 0; i < sizeof(snips) / sizeof(snips[0]); i++)
		total += snips[i].weight;
	x = rng_below(r, total);
	for (i = 0; x >= snips[i].weight; i++)
		x -= snips[i].weight;
	return snips[i].fn;
}

/* Writes exactly n lines of body text. */
static void write_body(struct gen *g, long n)
{
	long left = n;

	while (left > 0) {
		if (g->giant_left && chance(&g->rng, 10))
			snip_giant_line(g, &left);
		else
			pick_snip(&g->rng)(g, &left);
	}
}

static void write_preamble(struct gen *g, long n)
{
	struct rng *r = &g->rng;
	struct date dob = random_date(r, 1930, 2005);
	const char *dash = PICK(r, dashes);
	const char *sex = chance(r, 50) ? "F" : "M";
	int pages = rng_int(r, 3, 90);
	long left = n;

	if (emitf(g, &left, "PATIENT RECORD EXPORT %s SYNTHETIC DATA, NOT A REAL PERSON",
		  dash) &&
	    emitf(g, &left, "Name: %s [SYNTHETIC]", g->patient) &&
	    emitf(g, &left, "MRN: SYN-%07u\tDOB: %04d-%02d-%02d\tSex: %s", g->mrn,
		  dob.y, dob.m, dob.d, sex) &&
	    emitf(g, &left, "Exported by ChartMover 3.2 (test build) — %d pages",
		  pages))
		write_body(g, left);
}

/* ---- headers ---- */

static void block_line(struct encounter *e, const char *fmt, ...)
	PRINTF_LIKE(2, 3);

static void block_line(struct encounter *e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(e->block[e->nblock], HDR_MAX, fmt, ap);
	va_end(ap);
	e->nblock++;
}

static void render_banner(struct rng *r, struct encounter *e)
{
	static const char *const eqs[] = { "===", "===", "====", "=====" };
	static const char *const seps[] = { " | ", " | ", "|", " |  ", "  | " };
	const char *eq = PICK(r, eqs);
	const char *sep = PICK(r, seps);

	block_line(e, "%s ENCOUNTER %04d-%02d-%02d%s%s%s%s %s", eq, e->date.y,
		   e->date.m, e->date.d, sep, e->dept, sep, e->prov, eq);
}

static void render_bracket(struct rng *r, struct encounter *e)
{
	const char *space = chance(r, 80) ? " " : "  ";
	const char *dash = PICK(r, dashes);

	block_line(e, "[%04d-%02d-%02d]%s%s visit %s seen by %s", e->date.y,
		   e->date.m, e->date.d, space, e->dept, dash, e->prov);
}

/* A line for a block between the header and the metadata lines; *used
 * keeps one block from repeating a line. */
static const char *block_filler(struct rng *r, int style, unsigned *used)
{
	static const char *const labelled[] = {
		"Time: 14:05", "Location: Clinic B, Rm 212", "", "   ",
		"Encounter #: 0004417", "Visit Type: Follow-up",
		"Chief Complaint: chest pain", "Referring Provider: Dr. Okafor",
		"Department Phone: 555-0142", "Provider Type: Physician",
	};
	static const char *const admission[] = {
		"Source: EMS", "Admit time: 03:12", "", "Chief complaint: syncope",
		"Attending physician pager: 4432", "Referring: Dr. Patel",
		"Admitting diagnosis: CAP", "\t",
	};
	const char *const *lines = style == STYLE_LABELLED ? labelled : admission;
	long n = style == STYLE_LABELLED ? (long)(sizeof(labelled) / sizeof(labelled[0]))
					 : (long)(sizeof(admission) / sizeof(admission[0]));
	long i = rng_below(r, n), tries;

	for (tries = 0; tries < n && (*used & (1u << i)) != 0; tries++)
		i = (i + 1) % n;
	*used |= 1u << i;
	return lines[i];
}

static void render_labelled(struct rng *r, struct encounter *e, int block_size)
{
	static const char *const gaps[] = { " ", " ", "  ", "\t", "" };
	static const char *const field_gaps[] = { " ", " ", "  ", "\t" };
	static const char *const indents[] = { "", "", "", "  ", "\t" };
	char date[32];
	unsigned used = 0;
	int i, size = block_size > 0 ? block_size : rng_int(r, 3, MAX_BLOCK);
	int pd = rng_int(r, 1, size - 1), pp;

	do
		pp = rng_int(r, 1, size - 1);
	while (pp == pd);
	switch (rng_int(r, 0, 2)) {
	case 0:
		snprintf(date, sizeof(date), "%02d/%02d/%04d", e->date.m, e->date.d, e->date.y);
		break;
	case 1:
		snprintf(date, sizeof(date), "%d/%d/%04d", e->date.m, e->date.d, e->date.y);
		break;
	default:
		snprintf(date, sizeof(date), "%04d-%02d-%02d", e->date.y, e->date.m, e->date.d);
		break;
	}
	e->last_field = pd > pp ? pd : pp;
	block_line(e, "Visit Date:%s%s", PICK(r, gaps), date);
	for (i = 1; i < size; i++) {
		const char *indent = PICK(r, indents);
		const char *gap = PICK(r, field_gaps);

		if (i == pd)
			block_line(e, "%sDepartment:%s%s", indent, gap, e->dept);
		else if (i == pp)
			block_line(e, "%sProvider:%s%s", indent, gap, e->prov);
		else
			block_line(e, "%s", block_filler(r, STYLE_LABELLED, &used));
	}
}

static void render_admission(struct rng *r, struct encounter *e, int multiline_pct)
{
	const char *dash = PICK(r, dashes);
	const char *label = chance(r, 50) ? "attending" : "Attending";
	const char *indent = chance(r, 50) ? "" : "  ";
	const char *gap = chance(r, 70) ? " " : "  ";
	const char *month;
	char date[32];
	unsigned used = 0;
	int i, size, pa, form = rng_int(r, 0, 3);

	if (form == 0)
		month = month_full[e->date.m - 1];
	else if (form == 1)
		month = month_upper[e->date.m - 1];
	else
		month = month_abbr[e->date.m - 1];
	snprintf(date, sizeof(date), chance(r, 50) ? "%d %s %04d" : "%02d %s %04d",
		 e->date.d, month, e->date.y);
	if (!chance(r, multiline_pct)) {
		block_line(e, "ADMISSION NOTE %s %s (%s) %s: %s", dash, date,
			   e->dept, label, e->prov);
		return;
	}
	size = rng_int(r, 2, 5);
	pa = rng_int(r, 1, size - 1);
	e->last_field = pa;
	block_line(e, "ADMISSION NOTE %s %s (%s)", dash, date, e->dept);
	for (i = 1; i < size; i++) {
		if (i == pa)
			block_line(e, "%s%s:%s%s", indent, label, gap, e->prov);
		else
			block_line(e, "%s", block_filler(r, STYLE_ADMISSION, &used));
	}
}

static void render_block(struct rng *r, struct encounter *e,
			 const struct plan *p)
{
	e->nblock = 0;
	e->last_field = 0;
	switch (e->style) {
	case STYLE_BANNER:
		render_banner(r, e);
		break;
	case STYLE_LABELLED:
		render_labelled(r, e, p->block_size);
		break;
	case STYLE_ADMISSION:
		render_admission(r, e, p->multiline_pct);
		break;
	default:
		render_bracket(r, e);
		break;
	}
}

/* ---- planning a record ---- */

static void plan_defaults(struct rng *r, struct plan *p)
{
	long x = rng_below(r, 1000);

	if (x < 15)
		p->lines = rng_range(r, 4500, 5500);
	else if (x < 300)
		p->lines = rng_range(r, 800, 1500);
	else
		p->lines = rng_range(r, 150, 800);
	p->nenc = rng_int(r, 2, MAX_ENC);
	p->crlf = chance(r, 15);
	p->final_newline = !chance(r, 5);
	p->bom = chance(r, 2);
	p->at_line1 = p->bom || chance(r, 15);
	p->ends_with_header = chance(r, 8);
	p->snap_pct = 25;
	p->straddle_pct = 60;
	p->tiny_pct = 8;
	p->style = chance(r, 40) ? rng_int(r, 0, NSTYLES - 1) : -1;
	p->multiline_pct = 40;
	p->block_size = 0;
	p->giant = chance(r, 3);
	p->last_style = -1;
}

/* The deliberate edge cases, in the first records so that a small corpus
 * (the tests use 40) has every one of them. */
static void plan_edge_case(long idx, struct plan *p)
{
	switch (idx) {
	case 1:		/* a header on line 1 */
		p->at_line1 = 1;
		break;
	case 2:		/* a single encounter */
		p->nenc = 1;
		break;
	case 3:		/* CRLF line endings */
		p->crlf = 1;
		break;
	case 4:		/* no final newline; a labelled block ends the file */
		p->final_newline = 0;
		p->ends_with_header = 1;
		p->last_style = STYLE_LABELLED;
		break;
	case 5:		/* consecutive encounters with tiny bodies */
		p->nenc = MAX_ENC;
		p->tiny_pct = 100;
		break;
	case 6:		/* every header near a demo chunk edge, blocks cut */
		p->nenc = MAX_ENC;
		p->lines = 1400;
		p->snap_pct = 100;
		p->straddle_pct = 90;
		p->style = STYLE_LABELLED;
		p->block_size = MAX_BLOCK;
		break;
	case 7:		/* byte order mark, CRLF, header on line 1 */
		p->bom = 1;
		p->crlf = 1;
		p->at_line1 = 1;
		break;
	case 8:		/* a very long record */
		p->lines = 5000;
		break;
	case 9:		/* CRLF, no final newline, a banner as the last line */
		p->crlf = 1;
		p->final_newline = 0;
		p->ends_with_header = 1;
		p->last_style = STYLE_BANNER;
		break;
	case 10:	/* a 20-60 kB line */
		p->giant = 1;
		break;
	case 11:	/* the last chunk adds one new line: the last header */
		p->lines = 2 * DEMO_STEP + 13;
		p->ends_with_header = 1;
		p->last_style = STYLE_BRACKET;
		break;
	case 12:	/* the file ends exactly where chunk 2 ends */
		p->lines = 2 * DEMO_STEP + DEMO_SIZE;
		p->ends_with_header = 1;
		p->final_newline = 0;
		p->last_style = STYLE_ADMISSION;
		p->multiline_pct = 100;
		break;
	case 13:	/* admission headers with the attending lines below */
		p->style = STYLE_ADMISSION;
		p->multiline_pct = 100;
		p->snap_pct = 100;
		p->nenc = MAX_ENC;
		p->lines = 1500;
		break;
	default:
		break;
	}
}

static void make_encounters(struct gen *g)
{
	const struct plan *p = g->plan;
	struct rng *r = &g->rng;
	struct date dt = random_date(r, 2012, 2020);
	int i;

	for (i = 0; i < p->nenc; i++) {
		struct encounter *e = &g->enc[i];

		e->date = dt;
		e->dept = PICK(r, departments);
		e->prov = PICK(r, providers);
		e->style = p->style >= 0 ? p->style : rng_int(r, 0, NSTYLES - 1);
		if (i == p->nenc - 1 && p->last_style >= 0)
			e->style = p->last_style;
		render_block(r, e, p);
		if (chance(r, 10))	/* charts are not always in order */
			dt = random_date(r, 2012, 2020);
		else
			date_add(&dt, rng_int(r, 1, 400));
	}
}

/* Splits the lines left after the headers between the preamble, the
 * bodies and the tail. */
static void lay_out(struct gen *g)
{
	const struct plan *p = g->plan;
	struct rng *r = &g->rng;
	long weight[MAX_ENC + 1], total = 0, blocks = 0, left, given = 0;
	int i, n = p->nenc, last_weighted = -1;

	for (i = 0; i < n; i++)
		blocks += g->enc[i].nblock;
	left = p->lines - blocks;
	g->gap[0] = p->at_line1 ? 0 : rng_range(r, 3, left / 4 < 40 ? left / 4 : 40);
	left -= g->gap[0];
	/* slot i (1..n-1) is gap[i], slot n is the tail */
	for (i = 1; i <= n; i++) {
		long *slot = i < n ? &g->gap[i] : &g->tail;

		weight[i] = 0;
		*slot = 0;
		if (i == n && p->ends_with_header)
			continue;
		if (chance(r, p->tiny_pct)) {
			*slot = rng_range(r, 0, 2);
			given += *slot;
			continue;
		}
		weight[i] = 1 + rng_below(r, 100);
		total += weight[i];
		last_weighted = i;
	}
	if (given > left) {		/* tiny bodies but no room: none */
		for (i = 1; i < n; i++)
			g->gap[i] = 0;
		g->tail = 0;
		given = 0;
	}
	left -= given;
	for (i = 1; i <= n && total > 0; i++) {
		long share = left * weight[i] / total;

		if (i < n)
			g->gap[i] += share;
		else
			g->tail += share;
		given += share;
	}
	left = p->lines - blocks - given - g->gap[0];
	if (last_weighted < 0)
		g->gap[0] += left;
	else if (last_weighted < n)
		g->gap[last_weighted] += left;
	else
		g->tail += left;
}

/* Line (1-based) of header i under the current layout. */
static long header_line(const struct gen *g, int i)
{
	long line = 1;
	int k;

	for (k = 0; k < i; k++)
		line += g->gap[k] + g->enc[k].nblock;
	return line + g->gap[i];
}

/* a / b rounded down; b > 0. */
static long floor_div(long a, long b)
{
	return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* Moves some headers onto the last lines of a demo chunk (so that their
 * block is cut there, before its last metadata line) or next to them, by shifting lines between the body
 * before and the body after: to the chunk edge nearest to the header among
 * those it can reach. */
static void snap_to_chunk_edges(struct gen *g)
{
	const struct plan *p = g->plan;
	struct rng *r = &g->rng;
	int i;

	for (i = p->at_line1 ? 1 : 0; i < p->nenc; i++) {
		long *after = i + 1 < p->nenc ? &g->gap[i + 1] : &g->tail;
		long s = header_line(g, i), u, lo, hi, k, kmin, kmax;

		if (!chance(r, p->snap_pct) ||
		    (after == &g->tail && p->ends_with_header))
			continue;
		if (chance(r, p->straddle_pct))	/* metadata past the edge */
			u = rng_range(r, 0, g->enc[i].last_field - 1);
		else
			u = rng_range(r, -2, 16);
		/* reachable lines: [lo, hi]; target: k * STEP + SIZE - u */
		lo = s - g->gap[i] + (i == 0 ? 1 : 0);
		hi = s + *after;
		kmin = -floor_div(DEMO_SIZE - u - lo, DEMO_STEP);
		kmax = floor_div(hi + u - DEMO_SIZE, DEMO_STEP);
		if (kmin < 0)
			kmin = 0;
		if (kmin > kmax)
			continue;
		k = floor_div(s + u - DEMO_SIZE + DEMO_STEP / 2, DEMO_STEP);
		k = k < kmin ? kmin : k > kmax ? kmax : k;
		g->gap[i] += k * DEMO_STEP + DEMO_SIZE - u - s;
		*after -= k * DEMO_STEP + DEMO_SIZE - u - s;
	}
}

/* ---- writing ---- */

#define NDEPTS (sizeof(departments) / sizeof(departments[0]))

/* The flagship pipeline's truth files (--spans, --details, --departments);
 * each FILE is NULL when not asked for. */
struct flagship {
	FILE *spans;
	FILE *details;
	FILE *departments;
	long dept_count[NDEPTS];	/* encounters per departments[] entry */
};

/* Writes s as a JSON string, escaped as shoal's jsonl merge writes it. */
static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\r')
			fputs("\\r", f);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void write_truth(FILE *truth, const char *source, long line,
			const struct encounter *e)
{
	fputs("{\"source\":", truth);
	json_string(truth, source);
	fprintf(truth, ",\"line\":%ld,\"date\":\"%04d-%02d-%02d\",\"department\":",
		line, e->date.y, e->date.m, e->date.d);
	json_string(truth, e->dept);
	fputs(",\"provider\":", truth);
	json_string(truth, e->prov);
	fprintf(truth, ",\"style\":\"%s\"}\n", style_names[e->style]);
}

/* Writes encounter e's (or, with e NULL, the preamble's) span lines
 * start..end to the flagship truths asked for. */
static void write_span(struct flagship *fl, const char *source, long start,
		       long end, const struct encounter *e)
{
	size_t d;

	if (fl->spans != NULL) {
		fputs("{\"source\":", fl->spans);
		json_string(fl->spans, source);
		fprintf(fl->spans, ",\"start_line\":%ld,\"end_line\":%ld,\"kind\":\"%s\"}\n",
			start, end, e != NULL ? "encounter" : "preamble");
	}
	if (e == NULL)
		return;
	if (fl->details != NULL) {
		fputs("{\"source\":", fl->details);
		json_string(fl->details, source);
		fprintf(fl->details, ",\"start_line\":%ld,\"end_line\":%ld,"
			"\"date\":\"%04d-%02d-%02d\",\"department\":", start, end,
			e->date.y, e->date.m, e->date.d);
		json_string(fl->details, e->dept);
		fputs(",\"provider\":", fl->details);
		json_string(fl->details, e->prov);
		fprintf(fl->details, ",\"style\":\"%s\",\"line_count\":%ld}\n",
			style_names[e->style], end - start + 1);
	}
	for (d = 0; d < NDEPTS; d++)
		if (departments[d] == e->dept)
			fl->dept_count[d]++;
}

/* Writes the record's spans: the preamble, then each encounter up to the
 * line before the next header (the last one up to the record's last line).
 * An empty last line without a line end is no line: the file ends with
 * the line end before it, and readers count one line fewer. */
static void write_spans(struct flagship *fl, const struct gen *g, const char *source,
			const long *header)
{
	const struct plan *p = g->plan;
	long last = g->w.lines;
	int i;

	if (!p->final_newline && g->w.open_line && g->w.line_len == 0)
		last--;

	if (header[0] > 1)
		write_span(fl, source, 1, header[0] - 1, NULL);
	for (i = 0; i < p->nenc; i++)
		write_span(fl, source, header[i],
			   i + 1 < p->nenc ? header[i + 1] - 1 : last, &g->enc[i]);
}

/* Writes the body, the headers and their truth lines; header[i] gets the
 * line of header i. */
static void write_encounters(struct gen *g, FILE *truth, const char *source,
			     long *header)
{
	const struct plan *p = g->plan;
	int i, k;

	write_preamble(g, g->gap[0]);
	for (i = 0; i < p->nenc; i++) {
		const struct encounter *e = &g->enc[i];

		header[i] = g->w.lines + 1;
		write_truth(truth, source, g->w.lines + 1, e);
		for (k = 0; k < e->nblock; k++) {
			w_line(&g->w, e->block[k]);
			if (chance(&g->rng, 6))
				w_put(&g->w, "  ", 2);
		}
		write_body(g, i + 1 < p->nenc ? g->gap[i + 1] : g->tail);
	}
}

struct totals {
	long records, encounters, lines;
	uint64_t bytes;
};

/* Writes record idx (1-based) and its truth lines. */
static int write_record(const char *dir, const char *prefix, uint64_t seed,
			long idx, FILE *truth, struct flagship *fl, struct totals *tot)
{
	struct plan plan;
	struct gen g;
	long header[MAX_ENC];
	char path[PATH_MAX_LEN], source[PATH_MAX_LEN];
	const char *family, *given;

	memset(&g, 0, sizeof(g));
	g.rng.s = seed * 0x100000001B3ULL + (uint64_t)idx;
	rng_next(&g.rng);
	plan_defaults(&g.rng, &plan);
	plan_edge_case(idx, &plan);
	g.plan = &plan;
	g.giant_left = plan.giant;
	g.mrn = (unsigned)rng_range(&g.rng, 1000000, 9999999);
	family = PICK(&g.rng, family_names);
	given = PICK(&g.rng, given_names);
	snprintf(g.patient, sizeof(g.patient), "%s, %s", family, given);
	make_encounters(&g);
	lay_out(&g);
	snap_to_chunk_edges(&g);

	snprintf(path, sizeof(path), "%s/records/rec-%04ld.txt", dir, idx);
	snprintf(source, sizeof(source), "%srecords/rec-%04ld.txt", prefix, idx);
	g.w.f = fopen(path, "wb");
	if (g.w.f == NULL) {
		fprintf(stderr, "gen_records: %s: %s\n", path, strerror(errno));
		return -1;
	}
	g.w.eol = plan.crlf ? "\r\n" : "\n";
	if (plan.bom)
		w_put(&g.w, "\xEF\xBB\xBF", 3);
	write_encounters(&g, truth, source, header);
	write_spans(fl, &g, source, header);
	if (g.w.lines != plan.lines) {
		fprintf(stderr, "gen_records: %s: wrote %ld lines, planned %ld\n",
			path, g.w.lines, plan.lines);
		fclose(g.w.f);
		return -1;
	}
	tot->records++;
	tot->encounters += plan.nenc;
	tot->lines += g.w.lines;
	tot->bytes += g.w.bytes + (plan.final_newline ? strlen(g.w.eol) : 0);
	if (w_close(&g.w, plan.final_newline) != 0) {
		fprintf(stderr, "gen_records: %s: write failed\n", path);
		return -1;
	}
	return 0;
}

/* ---- command line ---- */

struct options {
	const char *out;
	const char *prefix;
	long count;
	uint64_t seed;
	const char *spans;		/* the flagship truths, or NULL */
	const char *details;
	const char *departments;
};

static void usage(FILE *f)
{
	fputs("usage: gen_records --out DIR [--count N (default 300)] "
	      "[--seed S (default 1)]\n"
	      "                   [--source-prefix P (default none)]\n"
	      "                   [--spans FILE] [--details FILE] [--departments FILE]\n"
	      "writes DIR/records/rec-NNNN.txt and DIR/truth.jsonl, whose\n"
	      "\"source\" fields are P followed by records/rec-NNNN.txt;\n"
	      "--spans, --details and --departments also write the truth of the\n"
	      "flagship pipeline's three outputs (configs/encounters/flagship.yaml)\n", f);
}

static int parse_number(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_args(int argc, char **argv, struct options *o)
{
	uint64_t v;
	int i;

	o->out = NULL;
	o->prefix = "";
	o->count = 300;
	o->seed = 1;
	o->spans = NULL;
	o->details = NULL;
	o->departments = NULL;
	for (i = 1; i < argc; i += 2) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			exit(0);
		}
		if (val == NULL)
			return -1;
		if (strcmp(a, "--out") == 0)
			o->out = val;
		else if (strcmp(a, "--source-prefix") == 0)
			o->prefix = val;
		else if (strcmp(a, "--spans") == 0)
			o->spans = val;
		else if (strcmp(a, "--details") == 0)
			o->details = val;
		else if (strcmp(a, "--departments") == 0)
			o->departments = val;
		else if (strcmp(a, "--count") == 0 && parse_number(val, MAX_RECORDS, &v) == 0 && v > 0)
			o->count = (long)v;
		else if (strcmp(a, "--seed") == 0 && parse_number(val, UINT64_MAX, &v) == 0)
			o->seed = v;
		else
			return -1;
	}
	return o->out == NULL ? -1 : 0;
}

/* Removes rec-NNNN.txt files past the corpus that an earlier, bigger run
 * left, so that DIR/records/ matches DIR/truth.jsonl. */
static void remove_stale_records(const char *dir, long count)
{
	char path[PATH_MAX_LEN];
	long i;

	for (i = count + 1; i <= MAX_RECORDS; i++) {
		snprintf(path, sizeof(path), "%s/records/rec-%04ld.txt", dir, i);
		if (remove(path) != 0)
			break;
	}
}

/* Opens path for writing unless it is NULL (*f stays NULL then). */
static int open_truth(const char *path, FILE **f)
{
	*f = NULL;
	if (path == NULL)
		return 0;
	*f = fopen(path, "wb");
	if (*f == NULL) {
		fprintf(stderr, "gen_records: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Closes f (if open); -1 when a write to it failed. */
static int close_truth(FILE *f, const char *path)
{
	int bad;

	if (f == NULL)
		return 0;
	bad = ferror(f);
	if (fclose(f) != 0)
		bad = 1;
	if (bad)
		fprintf(stderr, "gen_records: %s: write failed\n", path);
	return bad ? -1 : 0;
}

/* A CSV cell: quoted, with quotes doubled, when it holds '"', ',', CR or LF. */
static void csv_cell(FILE *f, const char *s)
{
	if (strpbrk(s, "\",\r\n") == NULL) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (; *s != '\0'; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

static int by_department(const void *a, const void *b)
{
	return strcmp(departments[*(const size_t *)a], departments[*(const size_t *)b]);
}

/* The departments' CSV: a header row, then each department that has
 * encounters, in bytewise order. */
static void write_departments(const struct flagship *fl)
{
	size_t order[NDEPTS], i;

	for (i = 0; i < NDEPTS; i++)
		order[i] = i;
	qsort(order, NDEPTS, sizeof(order[0]), by_department);
	fputs("department,encounters\n", fl->departments);
	for (i = 0; i < NDEPTS; i++) {
		if (fl->dept_count[order[i]] == 0)
			continue;
		csv_cell(fl->departments, departments[order[i]]);
		fprintf(fl->departments, ",%ld\n", fl->dept_count[order[i]]);
	}
}

static int make_dir(const char *path)
{
	if (mkdir(path, 0777) != 0 && errno != EEXIST) {
		fprintf(stderr, "gen_records: mkdir %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct options o;
	struct totals tot = { 0, 0, 0, 0 };
	struct flagship fl;
	char path[PATH_MAX_LEN];
	FILE *truth;
	long i;
	int rc = 0;

	if (parse_args(argc, argv, &o) != 0) {
		usage(stderr);
		return 2;
	}
	snprintf(path, sizeof(path), "%s/records", o.out);
	if (make_dir(o.out) != 0 || make_dir(path) != 0)
		return 1;
	snprintf(path, sizeof(path), "%s/truth.jsonl", o.out);
	memset(&fl, 0, sizeof(fl));
	truth = fopen(path, "wb");
	if (truth == NULL) {
		fprintf(stderr, "gen_records: %s: %s\n", path, strerror(errno));
		return 1;
	}
	if (open_truth(o.spans, &fl.spans) != 0 ||
	    open_truth(o.details, &fl.details) != 0 ||
	    open_truth(o.departments, &fl.departments) != 0)
		rc = -1;
	for (i = 1; i <= o.count && rc == 0; i++)
		rc = write_record(o.out, o.prefix, o.seed, i, truth, &fl, &tot);
	if (rc == 0 && fl.departments != NULL)
		write_departments(&fl);
	if (ferror(truth) || fclose(truth) != 0) {
		fprintf(stderr, "gen_records: %s: write failed\n", path);
		rc = -1;
	}
	if (close_truth(fl.spans, o.spans) != 0)
		rc = -1;
	if (close_truth(fl.details, o.details) != 0)
		rc = -1;
	if (close_truth(fl.departments, o.departments) != 0)
		rc = -1;
	if (rc != 0)
		return 1;
	remove_stale_records(o.out, o.count);
	printf("gen_records: seed %llu: %ld records, %ld encounters, %ld lines, %llu bytes\n",
	       (unsigned long long)o.seed, tot.records, tot.encounters, tot.lines,
	       (unsigned long long)tot.bytes);
	return 0;
}
