/* test_keys.c — typed key tables (tensor/keys.h): every kind parses what it should and refuses
 * what it should with a message naming the key, a printed table parses back to the same
 * struct, and a file is read line by line with its line number in errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/keys.h"
#include "test/test.h"

typedef enum { FRUIT_APPLE = 0, FRUIT_PEAR } Fruit;
static const char *const FRUITS[] = {"apple", "pear", NULL};

typedef struct {
    bool on, flag;
    int64_t count, dims[3];
    uint64_t seed;
    double rate, scale;
    int fruit;
    char name[16];
} Demo;

static const KeySpec DEMO_KEYS[] = {
    KEY_BOOL(Demo, "on", on, "a switch with a value"),
    KEY_INT(Demo, "count", count, -1, 100, "an integer in [-1, 100]"),
    KEY_INT_LIST(Demo, "dims", dims, 1, 64, "three integers"),
    KEY_UINT64(Demo, "seed", seed, "any 64-bit seed"),
    KEY_DOUBLE(Demo, "rate", rate, 0, 1, "a number in [0, 1]"),
    KEY_DOUBLE_OR(Demo, "scale", scale, 0, 10, "auto", "a number or auto"),
    KEY_ENUM(Demo, "fruit", fruit, FRUITS, "apple or pear"),
    KEY_STR(Demo, "name", name, "at most 15 bytes"),
};
#define NDEMO KEY_COUNT(DEMO_KEYS)

static Status set(Demo *d, const char *key, const char *value) {
    const KeyGroup g = {DEMO_KEYS, NDEMO, d};
    return keys_set_in(&g, 1, key, value);
}

TEST(keys_values_of_every_kind) {
    Demo d = {0};
    EXPECT(set(&d, "on", "YES") == STATUS_OK && d.on, "bool yes");
    EXPECT(set(&d, "on", "off") == STATUS_OK && !d.on, "bool off");
    static const KeySpec SWITCH[] = {KEY_SWITCH(Demo, "flag", flag, "a flag without a value")};
    EXPECT(keys_set(&SWITCH[0], &d, NULL, "--flag") == STATUS_OK && d.flag, "a switch");
    EXPECT(set(&d, "count", "-1") == STATUS_OK && d.count == -1, "int");
    EXPECT(set(&d, "dims", " 1,2 , 64") == STATUS_OK && d.dims[0] == 1 && d.dims[1] == 2 &&
               d.dims[2] == 64,
           "int list");
    EXPECT(set(&d, "seed", "18446744073709551615") == STATUS_OK && d.seed == UINT64_MAX, "u64");
    EXPECT(set(&d, "rate", "0.25") == STATUS_OK && d.rate == 0.25, "double");
    EXPECT(set(&d, "scale", "AUTO") == STATUS_OK && isnan(d.scale), "the word sets NAN");
    EXPECT(set(&d, "fruit", "pear") == STATUS_OK && d.fruit == FRUIT_PEAR, "enum");
    EXPECT(set(&d, "name", "fifteen bytes!!") == STATUS_OK && strcmp(d.name, "fifteen bytes!!") == 0,
           "string of 15 bytes");
}

TEST(keys_refuse_bad_values_and_leave_the_field) {
    Demo d = {.count = 7, .rate = 0.5, .dims = {4, 5, 6}, .fruit = FRUIT_APPLE};
    static const struct {
        const char *key, *value, *expect;
    } bad[] = {
        {"on", "maybe", "config key 'on': expected true or false, got 'maybe'"},
        {"count", "101", "config key 'count': 101 is outside [-1, 100]"},
        {"count", "7x", "config key 'count': expected an integer, got '7x'"},
        {"count", "", "config key 'count': expected an integer"},
        {"dims", "1,2", "config key 'dims': expected 3 comma-separated integers, got '1,2'"},
        {"dims", "1,2,3,4", "expected 3 comma-separated integers"},
        {"dims", "1,0,3", "config key 'dims': 0 is outside [1, 64]"},
        {"seed", "-3", "config key 'seed': expected a non-negative integer below 2^64"},
        {"seed", "18446744073709551616", "expected a non-negative integer below 2^64"},
        {"rate", "1.5", "config key 'rate': 1.5 is outside [0, 1]"},
        {"rate", "nan", "config key 'rate': expected a number, got 'nan'"},
        {"scale", "big", "config key 'scale': expected a number or auto, got 'big'"},
        {"fruit", "plum", "config key 'fruit': expected one of apple|pear, got 'plum'"},
        {"name", "sixteen bytes!!!", "config key 'name': value longer than 15 bytes"},
        {"name", "a\"b", "holds a double quote or a line break"},
        {"colour", "red", "unknown config key 'colour'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Status st = set(&d, bad[i].key, bad[i].value);
        EXPECT(st == STATUS_ERR_USAGE && strstr(error_last(), bad[i].expect), "%s = '%s': %s",
               bad[i].key, bad[i].value, st == STATUS_OK ? "accepted" : error_last());
    }
    EXPECT(d.count == 7 && d.rate == 0.5 && d.dims[0] == 4 && d.dims[1] == 5 && d.dims[2] == 6 &&
               d.fruit == FRUIT_APPLE && d.name[0] == 0,
           "a refused value changed the struct");
    const KeySpec *k = keys_find(DEMO_KEYS, NDEMO, "count");
    EXPECT(keys_set(k, &d, "x", "--count") == STATUS_ERR_USAGE &&
               strncmp(error_last(), "--count: expected an integer", 28) == 0,
           "a flag parser's label: %s", error_last());
}

TEST(keys_print_parses_back) {
    Demo a = {.on = true, .count = -1, .dims = {3, 1, 64}, .seed = 12345678901234567ULL,
              .rate = 0.1, .scale = NAN, .fruit = FRUIT_PEAR};
    strcpy(a.name, "x # y: z");
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    keys_print(DEMO_KEYS, NDEMO, &a, f);
    fclose(f);
    Demo b = {0};
    const KeyGroup g = {DEMO_KEYS, NDEMO, &b};
    Status st = keys_parse_text(&g, 1, text, "printed");
    EXPECT(st == STATUS_OK, "%s", error_last());
    EXPECT(b.on == a.on && b.count == a.count && memcmp(b.dims, a.dims, sizeof a.dims) == 0 &&
               b.seed == a.seed && b.rate == a.rate && isnan(b.scale) && b.fruit == a.fruit &&
               strcmp(b.name, a.name) == 0,
           "round trip of:\n%s", text);
    EXPECT(strstr(text, "rate = 0.1 ") && strstr(text, "# a number in [0, 1]"),
           "shortest exact form and the help comment:\n%s", text);
    free(text);
}

TEST(keys_text_lines_groups_and_errors) {
    Demo a = {0}, b = {0};
    static const KeySpec OTHER[] = {KEY_INT(Demo, "depth", count, 0, 9, "in the second group")};
    const KeyGroup g[2] = {{DEMO_KEYS, NDEMO, &a}, {OTHER, 1, &b}};
    const char *text = "---\n# comment\n\ncount: 5   # YAML style\nname = 'quoted'\ndepth = 3\n";
    EXPECT(keys_parse_text(g, 2, text, "demo") == STATUS_OK, "%s", error_last());
    EXPECT(a.count == 5 && strcmp(a.name, "quoted") == 0 && b.count == 3, "values of two groups");
    EXPECT(keys_parse_text(g, 2, "count = 1\n\nrate = 2\n", "demo.conf") == STATUS_ERR_USAGE &&
               strstr(error_last(), "demo.conf:3: config key 'rate': 2 is outside [0, 1]"),
           "line number: %s", error_last());
    EXPECT(keys_parse_text(g, 2, "just words\n", "demo.conf") == STATUS_ERR_USAGE &&
               strstr(error_last(), "demo.conf:1: expected 'key = value', got 'just words'"),
           "no separator: %s", error_last());
    EXPECT(keys_parse_file(g, 2, "/nonexistent/demo.conf") == STATUS_ERR_IO &&
               strstr(error_last(), "/nonexistent/demo.conf"),
           "missing file: %s", error_last());
}
