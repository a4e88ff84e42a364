/* A recursive-descent JSON parser (RFC 8259) into js nodes; strings are unescaped with
 * \uXXXX (and surrogate pairs) encoded as UTF-8. Depth is limited so a hostile
 * config.json cannot exhaust the stack. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "rt.h"
#include "rt_json.h"

#define JS_MAX_DEPTH 64

struct parser {
    const char *p;
    const char *start;
    char *err;
    size_t errlen;
    int failed;
};

static void *xcalloc(size_t n)
{
    void *p = calloc(1, n);
    if (!p) {
        fputs("fastbox-runtime: out of memory\n", stderr);
        _exit(1);
    }
    return p;
}

static void fail(struct parser *ps, const char *what)
{
    if (!ps->failed)
        snprintf(ps->err, ps->errlen, "%s at offset %ld", what, (long)(ps->p - ps->start));
    ps->failed = 1;
}

static void ws(struct parser *ps)
{
    while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')
        ps->p++;
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static char *utf8(char *o, unsigned cp)
{
    if (cp < 0x80) *o++ = (char)cp;
    else if (cp < 0x800) { *o++ = (char)(0xC0 | (cp >> 6)); *o++ = (char)(0x80 | (cp & 0x3F)); }
    else if (cp < 0x10000) { *o++ = (char)(0xE0 | (cp >> 12)); *o++ = (char)(0x80 | ((cp >> 6) & 0x3F)); *o++ = (char)(0x80 | (cp & 0x3F)); }
    else { *o++ = (char)(0xF0 | (cp >> 18)); *o++ = (char)(0x80 | ((cp >> 12) & 0x3F)); *o++ = (char)(0x80 | ((cp >> 6) & 0x3F)); *o++ = (char)(0x80 | (cp & 0x3F)); }
    return o;
}

static char *parse_string(struct parser *ps)
{
    const char *s = ++ps->p; /* past the quote */
    size_t n = 0;
    while (s[n] && s[n] != '"') {
        if (s[n] == '\\' && s[n + 1])
            n++;
        n++;
    }
    if (!s[n]) {
        fail(ps, "unterminated string");
        return NULL;
    }
    char *out = xcalloc(n + 1), *o = out; /* unescaped is never longer than escaped */
    while (*ps->p != '"') {
        unsigned char c = (unsigned char)*ps->p++;
        if (c < 0x20) {
            fail(ps, "control character in string");
            return NULL;
        }
        if (c != '\\') {
            *o++ = (char)c;
            continue;
        }
        c = (unsigned char)*ps->p++;
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (hex4(ps->p, &cp) < 0) {
                fail(ps, "bad \\u escape");
                return NULL;
            }
            ps->p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && ps->p[0] == '\\' && ps->p[1] == 'u' &&
                hex4(ps->p + 2, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                ps->p += 6;
            }
            if (cp == 0) {
                fail(ps, "NUL in string");
                return NULL;
            }
            o = utf8(o, cp);
            break;
        }
        default:
            fail(ps, "bad escape");
            return NULL;
        }
    }
    ps->p++;
    *o = '\0';
    return out;
}

static struct js *parse_value(struct parser *ps, int depth);

static struct js *parse_container(struct parser *ps, int depth, int obj)
{
    struct js *v = xcalloc(sizeof *v), **tail = &v->child;
    v->type = obj ? JS_OBJ : JS_ARR;
    char close = obj ? '}' : ']';
    ps->p++;
    ws(ps);
    if (*ps->p == close) {
        ps->p++;
        return v;
    }
    for (;;) {
        char *key = NULL;
        ws(ps);
        if (obj) {
            if (*ps->p != '"') {
                fail(ps, "expected a member name");
                return NULL;
            }
            if (!(key = parse_string(ps)))
                return NULL;
            ws(ps);
            if (*ps->p++ != ':') {
                fail(ps, "expected ':'");
                return NULL;
            }
        }
        struct js *item = parse_value(ps, depth + 1);
        if (!item)
            return NULL;
        item->key = key;
        *tail = item;
        tail = &item->next;
        v->n++;
        ws(ps);
        if (*ps->p == ',') {
            ps->p++;
            continue;
        }
        if (*ps->p == close) {
            ps->p++;
            return v;
        }
        fail(ps, obj ? "expected ',' or '}'" : "expected ',' or ']'");
        return NULL;
    }
}

static struct js *parse_value(struct parser *ps, int depth)
{
    if (depth > JS_MAX_DEPTH) {
        fail(ps, "nested too deeply");
        return NULL;
    }
    ws(ps);
    char c = *ps->p;
    if (c == '{' || c == '[')
        return parse_container(ps, depth, c == '{');
    struct js *v = xcalloc(sizeof *v);
    if (c == '"') {
        v->type = JS_STR;
        v->str = parse_string(ps);
        return v->str ? v : NULL;
    }
    static const struct { const char *word; int type, b; } words[] = {
        {"true", JS_BOOL, 1}, {"false", JS_BOOL, 0}, {"null", JS_NULL, 0}};
    for (unsigned i = 0; i < 3; i++) {
        size_t n = strlen(words[i].word);
        if (!strncmp(ps->p, words[i].word, n)) {
            ps->p += n;
            v->type = words[i].type;
            v->boolean = words[i].b;
            return v;
        }
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        char *end;
        v->type = JS_NUM;
        v->real = strtod(ps->p, &end);
        errno = 0;
        char *iend;
        long long i = strtoll(ps->p, &iend, 10);
        if (errno == ERANGE && *ps->p != '-') /* a uint64 (seccomp argument values) */
            i = (long long)strtoull(ps->p, &iend, 10), errno = 0;
        v->num = (iend == end && errno == 0) ? i : (long long)v->real;
        if (end == ps->p) {
            fail(ps, "bad number");
            return NULL;
        }
        ps->p = end;
        return v;
    }
    fail(ps, "unexpected character");
    return NULL;
}

struct js *js_parse(const char *text, char *err, size_t errlen)
{
    struct parser ps = {text, text, err, errlen, 0};
    struct js *v = parse_value(&ps, 0);
    if (v) {
        ws(&ps);
        if (*ps.p) {
            fail(&ps, "trailing data");
            v = NULL;
        }
    }
    return v;
}

struct js *js_parse_file(const char *path, char *err, size_t errlen)
{
    char *buf = rt_read_file(path);
    if (!buf) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char perr[200];
    struct js *v = js_parse(buf, perr, sizeof perr);
    if (!v)
        snprintf(err, errlen, "%s: %s", path, perr);
    return v;
}

struct js *js_get(const struct js *obj, const char *key)
{
    if (!obj || obj->type != JS_OBJ)
        return NULL;
    for (struct js *m = obj->child; m; m = m->next)
        if (!strcmp(m->key, key))
            return m->type == JS_NULL ? NULL : m;
    return NULL;
}

struct js *js_path(const struct js *obj, ...)
{
    va_list ap;
    va_start(ap, obj);
    const char *k;
    struct js *v = (struct js *)obj;
    while (v && (k = va_arg(ap, const char *)))
        v = js_get(v, k);
    va_end(ap);
    return v;
}

const char *js_str(const struct js *obj, const char *key, const char *def)
{
    struct js *v = js_get(obj, key);
    return v && v->type == JS_STR ? v->str : def;
}

long long js_int(const struct js *obj, const char *key, long long def)
{
    struct js *v = js_get(obj, key);
    return v && v->type == JS_NUM ? v->num : def;
}

int js_bool(const struct js *obj, const char *key, int def)
{
    struct js *v = js_get(obj, key);
    return v && v->type == JS_BOOL ? v->boolean : def;
}

int js_has(const struct js *obj, const char *key)
{
    return js_get(obj, key) != NULL;
}

void js_write_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '\t')
            fputs("\\t", f);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

void js_dump(FILE *f, const struct js *v)
{
    if (!v) {
        fputs("null", f);
        return;
    }
    switch (v->type) {
    case JS_NULL: fputs("null", f); break;
    case JS_BOOL: fputs(v->boolean ? "true" : "false", f); break;
    case JS_NUM:
        if ((double)v->num == v->real) fprintf(f, "%lld", v->num);
        else fprintf(f, "%.17g", v->real);
        break;
    case JS_STR: js_write_str(f, v->str); break;
    default: {
        int obj = v->type == JS_OBJ;
        fputc(obj ? '{' : '[', f);
        for (struct js *m = v->child; m; m = m->next) {
            if (obj) {
                js_write_str(f, m->key);
                fputc(':', f);
            }
            js_dump(f, m);
            if (m->next)
                fputc(',', f);
        }
        fputc(obj ? '}' : ']', f);
    }
    }
}
