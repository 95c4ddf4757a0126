/*
 * logrelay_filter.h - the logrelay WASM filter ABI (v1) for C authors.
 *
 * A filter is a WebAssembly core module that imports these functions from
 * module "logrelay" and exports `memory`, `filter` and optionally `init`.
 * Build with clang (Debian: apt install clang lld):
 *
 *   clang --target=wasm32 -O2 -nostdlib -mbulk-memory \
 *         -Wl,--no-entry -Wl,--export-memory -o myfilter.wasm myfilter.c
 *
 * Example: keep only records at WARNING or above.
 *
 *   #include "logrelay_filter.h"
 *
 *   LOGRELAY_EXPORT("filter") int filter(void) {
 *       return logrelay_levelno() >= LOGRELAY_WARNING ? LOGRELAY_KEEP : LOGRELAY_DROP;
 *   }
 *
 * Conventions (see plugins/README.md for the full contract):
 * - Lengths and return values are int32. Getters copy the value into
 *   (buf, cap) only if it fits, and always return its full length (or -1
 *   when absent): call again with a bigger buffer if the result > cap.
 * - field_get returns a str field's text as-is and any other value as JSON
 *   text ("40", "null", "[1,2]"). field_set takes JSON text: to set a
 *   string, pass it quoted ("\"prod\"").
 * - field_set / record_set return 0, or -1 for invalid JSON (record_set:
 *   also for JSON that is not an object); field_remove returns 0, or -1
 *   when the field was absent.
 * - A pointer or length outside memory traps the call: the host then
 *   applies the filter's on_error policy and recreates the instance.
 * - memory.grow beyond max_memory_bytes returns -1.
 */
#ifndef LOGRELAY_FILTER_H
#define LOGRELAY_FILTER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LOGRELAY_ABI_VERSION 1

/* filter() results. */
#define LOGRELAY_KEEP 0
#define LOGRELAY_DROP 1

/* Python's level numbers, for log() and comparisons. */
#define LOGRELAY_DEBUG 10
#define LOGRELAY_INFO 20
#define LOGRELAY_WARNING 30
#define LOGRELAY_ERROR 40
#define LOGRELAY_CRITICAL 50

#define LOGRELAY_IMPORT(name) \
    __attribute__((import_module("logrelay"), import_name(name)))
#define LOGRELAY_EXPORT(name) __attribute__((export_name(name)))

/* Field `name`: copied into buf if it fits; its full length, or -1. */
LOGRELAY_IMPORT("field_get")
int32_t logrelay_field_get(const char *name, int32_t name_len, char *buf, int32_t cap);

/* Set field `name` to a JSON value (replaced in place or appended). */
LOGRELAY_IMPORT("field_set")
int32_t logrelay_field_set(const char *name, int32_t name_len, const char *json, int32_t json_len);

/* Remove field `name`: 0, or -1 if absent. */
LOGRELAY_IMPORT("field_remove")
int32_t logrelay_field_remove(const char *name, int32_t name_len);

/* The whole record as a JSON object, fields in arrival order. */
LOGRELAY_IMPORT("record_get")
int32_t logrelay_record_get(char *buf, int32_t cap);

/* Replace the whole record by a JSON object. */
LOGRELAY_IMPORT("record_set")
int32_t logrelay_record_set(const char *json, int32_t len);

/* The filter's "config" from listener.json, as JSON ("null" if none). */
LOGRELAY_IMPORT("config_get")
int32_t logrelay_config_get(char *buf, int32_t cap);

/* A line in logrelay's own log (rate-limited), at a Python level. */
LOGRELAY_IMPORT("log")
void logrelay_log(int32_t level, const char *msg, int32_t len);

/* Length of a NUL-terminated string (no libc under -nostdlib). */
static inline int32_t logrelay_strlen(const char *s) {
    int32_t n = 0;
    while (s[n]) n++;
    return n;
}

/* Field by C-string name. */
static inline int32_t logrelay_get(const char *name, char *buf, int32_t cap) {
    return logrelay_field_get(name, logrelay_strlen(name), buf, cap);
}

/* Set a field to a C-string JSON value, e.g. logrelay_set("env", "\"prod\""). */
static inline int32_t logrelay_set(const char *name, const char *json) {
    return logrelay_field_set(name, logrelay_strlen(name), json, logrelay_strlen(json));
}

/* An integer field (levelno, lineno, process...), or `dflt` if absent or
 * not an integer. */
static inline int64_t logrelay_get_int(const char *name, int64_t dflt) {
    char buf[24];
    int32_t n = logrelay_get(name, buf, (int32_t)sizeof buf);
    if (n <= 0 || n > (int32_t)sizeof buf) return dflt;
    int32_t i = 0, neg = 0;
    int64_t v = 0;
    if (buf[0] == '-') { neg = 1; i = 1; }
    if (i == n) return dflt;
    for (; i < n; i++) {
        if (buf[i] < '0' || buf[i] > '9') return dflt;
        v = v * 10 + (buf[i] - '0');
    }
    return neg ? -v : v;
}

/* The record's levelno (0 when absent). */
static inline int64_t logrelay_levelno(void) {
    return logrelay_get_int("levelno", 0);
}

/* Log a C string. */
static inline void logrelay_log_str(int32_t level, const char *msg) {
    logrelay_log(level, msg, logrelay_strlen(msg));
}

#ifdef __cplusplus
}
#endif

#endif /* LOGRELAY_FILTER_H */
