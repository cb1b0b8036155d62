#ifndef APIARY_CONFIG_CONFIG_TABLE_H
#define APIARY_CONFIG_CONFIG_TABLE_H

/* The table of configuration keys and the conversions between a key's text
 * form and its typed field in ap_config. Private to pipeline/config. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/config/config.h"

/* Sizes of the buffers for a dotted key path and for the reason a value was rejected. */
#define KEY_PATH_MAX 256
#define REASON_MAX   768

typedef enum {
    AP_VALUE_INT,         /* int */
    AP_VALUE_INT64,       /* int64_t */
    AP_VALUE_UINT64,      /* uint64_t, the full range */
    AP_VALUE_DOUBLE,      /* double, finite */
    AP_VALUE_BOOL,        /* bool */
    AP_VALUE_STRING,      /* char array, NUL-terminated */
    AP_VALUE_CHOICE,      /* char array containing one of choices */
    AP_VALUE_ENUM,        /* int-sized C enum whose value is the index into choices */
    AP_VALUE_FLOAT_LIST,  /* float array of exactly max_items items */
    AP_VALUE_STRING_LIST, /* array of char[item_size] with an int count */
    AP_VALUE_INT_LIST,    /* int array with an int count */
} ap_value_type;

enum {
    AP_KEY_MIN_EXCLUSIVE = 1u << 0, /* real_min itself is not allowed */
    AP_KEY_MAX_EXCLUSIVE = 1u << 1, /* real_max itself is not allowed */
    /* strings of letters, digits, '_', '-' and '.', not starting with '.' */
    AP_KEY_NAME = 1u << 2,
    AP_KEY_NONEMPTY = 1u << 3 /* strings and string list items: at least one character */
};

typedef struct {
    const char *name; /* dotted key, for example "train.epochs" */
    ap_value_type type;
    size_t offset;       /* of the field in ap_config */
    size_t size;         /* of the whole field in bytes */
    size_t item_size;    /* lists: bytes per item */
    size_t count_offset; /* string and int lists: offset of the int item count */
    int max_items;       /* list capacity, which a float list must fill exactly */
    int64_t int_min;     /* integers and integer list items, inclusive */
    int64_t int_max;
    double real_min; /* doubles and float list items, inclusive unless flagged */
    double real_max;
    unsigned flags;
    const char *const *choices; /* enums and choices, NULL-terminated */
    const char *default_text;   /* parsed like a --set value, with lists comma-separated */
    const char *help;
} ap_config_key;

extern const ap_config_key ap_config_keys[];
extern const size_t ap_config_key_count;

/* Find a key by its dotted name. Returns NULL when there is none. */
const ap_config_key *ap_config_key_find(const char *name);

/* True when name is a section: a prefix of some key followed by a dot
 * ("train" for "train.epochs"). */
bool ap_config_is_section(const char *name);

/* List the distinct names directly under section ("" for the top level),
 * for example "epochs, batch_size" under "train". */
void ap_config_list_children(const char *section, char *out, size_t out_size);

/* Explain an unknown key: name a likely intended key and list the keys
 * allowed in its section. */
void ap_config_describe_unknown_key(const char *name, char *out, size_t out_size);

bool ap_config_key_is_list(const ap_config_key *key);

/* Parse text and store it in the key's field of cfg. Scalars take the text
 * as is, and lists take comma-separated items. On failure reason describes what
 * was wrong and what is allowed, and the field may be partly written. */
bool ap_config_key_parse_text(const ap_config_key *key, const char *text, ap_config *cfg,
                              char *reason, size_t reason_size);

/* Parse one scalar value. key must not be a list. */
bool ap_config_key_parse_scalar(const ap_config_key *key, const char *text, ap_config *cfg,
                                char *reason, size_t reason_size);

/* Parse item number index (0-based) of a list. Fails once index reaches the
 * list's capacity, which is how a too long list is reported. */
bool ap_config_key_parse_item(const ap_config_key *key, int index, const char *text, ap_config *cfg,
                              char *reason, size_t reason_size);

/* Record that a list has count items and clear the unused slots. */
bool ap_config_key_set_count(const ap_config_key *key, int count, ap_config *cfg, char *reason,
                             size_t reason_size);

/* Check the value stored in cfg against the key's bounds, as a parse would. */
bool ap_config_key_check(const ap_config_key *key, const ap_config *cfg, char *reason,
                         size_t reason_size);

/* Return the number of items in a list key's field of cfg. */
int ap_config_key_item_count(const ap_config_key *key, const ap_config *cfg);

/* Format a scalar value, or one list item, as text that parses back to the
 * same value (doubles and floats with the fewest digits that do). */
void ap_config_key_format_scalar(const ap_config_key *key, const ap_config *cfg, char *out,
                                 size_t out_size);
void ap_config_key_format_item(const ap_config_key *key, const ap_config *cfg, int index, char *out,
                               size_t out_size);

/* Describe what values a key takes, as a phrase for error messages
 * ("an integer from 1 to 100000") or in short form for the key table
 * ("[1, 100000]"). */
void ap_config_key_describe(const ap_config_key *key, char *out, size_t out_size);
void ap_config_key_describe_short(const ap_config_key *key, char *out, size_t out_size);

/* Describe the values that one item of a list key, or a scalar key, accepts. */
void ap_config_key_describe_value(const ap_config_key *key, char *out, size_t out_size);

/* Describe the text that a string key, or a string list item, accepts in a
 * buffer of size bytes. */
void ap_config_key_describe_string(const ap_config_key *key, size_t size, char *out,
                                   size_t out_size);

/* Format a double as the shortest text that parses back to the same value,
 * writing whole numbers below 1e15 without an exponent. */
void ap_config_format_double(double value, char *out, size_t out_size);

/* The type as listed in the key table, for example "int" or "int list". */
const char *ap_config_key_type_name(const ap_config_key *key);

bool ap_config_key_equal(const ap_config_key *key, const ap_config *a, const ap_config *b);

#endif
