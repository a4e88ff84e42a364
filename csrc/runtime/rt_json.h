/* A small JSON reader and writer for config.json, state.json and the verbs' output.
 * The document is parsed once into a tree of nodes that live until the process exits
 * (the runtime is a short-lived command: nothing is freed). */
#ifndef RT_JSON_H
#define RT_JSON_H
#include <stdio.h>

enum { JS_NULL, JS_BOOL, JS_NUM, JS_STR, JS_ARR, JS_OBJ };

struct js {
    int type;
    const char *key;   /* member name, when in an object */
    const char *str;   /* JS_STR: the unescaped string */
    long long num;     /* JS_NUM: integral value (OCI numbers are integers) */
    double real;
    int boolean;
    struct js *child;  /* first element or member */
    struct js *next;
    int n;             /* number of children */
};

/* NULL with err filled on a syntax error */
struct js *js_parse(const char *text, char *err, size_t errlen);
/* A whole file; NULL with err filled (no such file, syntax) */
struct js *js_parse_file(const char *path, char *err, size_t errlen);

struct js *js_get(const struct js *obj, const char *key);
/* a path of keys: js_path(root, "linux", "resources", "memory", NULL) */
struct js *js_path(const struct js *obj, ...);
const char *js_str(const struct js *obj, const char *key, const char *def);
long long js_int(const struct js *obj, const char *key, long long def);
int js_bool(const struct js *obj, const char *key, int def);
int js_has(const struct js *obj, const char *key);

#define JS_EACH(it, arr) for (struct js *it = (arr) ? (arr)->child : NULL; it; it = it->next)

/* writing */
void js_write_str(FILE *f, const char *s);
void js_dump(FILE *f, const struct js *v); /* compact */
#endif
