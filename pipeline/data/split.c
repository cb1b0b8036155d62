#include "pipeline/data/split.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/config/config.h"

#define PART_COUNT      3
#define MAX_PASSES      64
#define MAX_SWAP_GROUPS 1024
#define MIN_IMPROVEMENT 1e-12
#define SPLIT_MAX_BYTES AP_MANIFEST_MAX_BYTES

static const char *const part_names[PART_COUNT] = {"train", "val", "test"};

const char *ap_split_part_name(ap_split_part part)
{
    return (unsigned)part < PART_COUNT ? part_names[part] : "unknown";
}

/* ---- random numbers: xoshiro256** seeded through splitmix64 ------------- */

typedef struct {
    uint64_t state[4];
} xoshiro256;

static uint64_t splitmix64_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotate_left(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static void xoshiro_seed(xoshiro256 *rng, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        rng->state[i] = splitmix64_next(&seed);
}

static uint64_t xoshiro_next(xoshiro256 *rng)
{
    uint64_t *s = rng->state;
    uint64_t result = rotate_left(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotate_left(s[3], 45);
    return result;
}

/* Uniform in [0, bound) without modulo bias, by rejection. */
static uint64_t random_below(xoshiro256 *rng, uint64_t bound)
{
    uint64_t threshold = (0 - bound) % bound;
    for (;;) {
        uint64_t r = xoshiro_next(rng);
        if (r >= threshold)
            return r % bound;
    }
}

/* ---- groups ------------------------------------------------------------- */

typedef struct {
    size_t images;
    size_t positives[AP_MAX_LABELS];
} split_counts;

typedef struct {
    split_counts counts;
    size_t shuffle_rank; /* position after the seeded shuffle */
    int part;
} split_group;

typedef struct {
    const char *name;
    size_t row;
} name_entry;

static int compare_name_entries(const void *a, const void *b)
{
    const name_entry *left = a, *right = b;
    int order = strcmp(left->name, right->name);
    if (order != 0)
        return order;
    return left->row < right->row ? -1 : left->row > right->row;
}

/* Sort the rows by group name and number the groups in that order, so the
 * numbering does not depend on the row order of the manifest. */
static ap_status number_groups(const ap_manifest *manifest, size_t *group_of_row,
                               size_t *group_count, ap_error *err)
{
    name_entry *entries = malloc(manifest->row_count * sizeof(*entries));
    if (entries == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "split: cannot allocate %zu group entries",
                            manifest->row_count);
    for (size_t i = 0; i < manifest->row_count; i++)
        entries[i] = (name_entry){manifest->rows[i].group, i};
    qsort(entries, manifest->row_count, sizeof(*entries), compare_name_entries);
    size_t count = 0;
    for (size_t i = 0; i < manifest->row_count; i++) {
        if (i > 0 && strcmp(entries[i].name, entries[i - 1].name) != 0)
            count++;
        group_of_row[entries[i].row] = count;
    }
    *group_count = manifest->row_count > 0 ? count + 1 : 0;
    free(entries);
    return AP_OK;
}

static void count_group_rows(const ap_manifest *manifest, const size_t *group_of_row,
                             split_group *groups)
{
    for (size_t i = 0; i < manifest->row_count; i++) {
        split_counts *counts = &groups[group_of_row[i]].counts;
        counts->images++;
        for (int l = 0; l < manifest->label_count; l++)
            counts->positives[l] += manifest->rows[i].labels[l] == 1;
    }
}

/* ---- cost --------------------------------------------------------------- */

/* Targets for each part: its fraction of the images and of each label's positives. */
typedef struct {
    int label_count;
    double fraction[PART_COUNT];
    double images[PART_COUNT];
    double positives[PART_COUNT][AP_MAX_LABELS];
    split_counts filled[PART_COUNT];
    size_t group_count[PART_COUNT];
} split_plan;

static double squared_relative_error(double value, double target)
{
    double error = (value - target) / target;
    return error * error;
}

/* The squared relative deviation of one part from its targets, summed over
 * the image count and every label that has positives. */
static double part_cost(const split_plan *plan, int part, const split_counts *counts)
{
    double cost = squared_relative_error((double)counts->images, plan->images[part]);
    for (int l = 0; l < plan->label_count; l++)
        if (plan->positives[part][l] > 0)
            cost += squared_relative_error((double)counts->positives[l], plan->positives[part][l]);
    return cost;
}

static void add_counts(split_counts *to, const split_counts *from, int label_count)
{
    to->images += from->images;
    for (int l = 0; l < label_count; l++)
        to->positives[l] += from->positives[l];
}

/* Requires that from is part of to. */
static void subtract_counts(split_counts *to, const split_counts *from, int label_count)
{
    to->images -= from->images;
    for (int l = 0; l < label_count; l++)
        to->positives[l] -= from->positives[l];
}

/* Change of cost when the group joins the part. */
static double join_change(const split_plan *plan, int part, const split_counts *group)
{
    split_counts changed = plan->filled[part];
    add_counts(&changed, group, plan->label_count);
    return part_cost(plan, part, &changed) - part_cost(plan, part, &plan->filled[part]);
}

/* Change of cost when the group, now in the part, leaves it. */
static double leave_change(const split_plan *plan, int part, const split_counts *group)
{
    split_counts changed = plan->filled[part];
    subtract_counts(&changed, group, plan->label_count);
    return part_cost(plan, part, &changed) - part_cost(plan, part, &plan->filled[part]);
}

static void place_group(split_plan *plan, split_group *group, int part)
{
    if (group->part >= 0) {
        subtract_counts(&plan->filled[group->part], &group->counts, plan->label_count);
        plan->group_count[group->part]--;
    }
    add_counts(&plan->filled[part], &group->counts, plan->label_count);
    plan->group_count[part]++;
    group->part = part;
}

static void init_plan(split_plan *plan, const split_group *groups, size_t group_count,
                      int label_count, const double fraction[PART_COUNT])
{
    memset(plan, 0, sizeof(*plan));
    plan->label_count = label_count;
    split_counts total = {0};
    for (size_t g = 0; g < group_count; g++)
        add_counts(&total, &groups[g].counts, label_count);
    for (int p = 0; p < PART_COUNT; p++) {
        plan->fraction[p] = fraction[p];
        plan->images[p] = fraction[p] * (double)total.images;
        for (int l = 0; l < label_count; l++)
            plan->positives[p][l] = fraction[p] * (double)total.positives[l];
    }
}

/* ---- assignment --------------------------------------------------------- */

static int size_class(size_t images)
{
    int bits = 0;
    while (images > 1) {
        images >>= 1;
        bits++;
    }
    return bits;
}

static int compare_by_size_class(const void *a, const void *b)
{
    const split_group *left = *(const split_group *const *)a;
    const split_group *right = *(const split_group *const *)b;
    int left_class = size_class(left->counts.images),
        right_class = size_class(right->counts.images);
    if (left_class != right_class)
        return left_class > right_class ? -1 : 1;
    return left->shuffle_rank < right->shuffle_rank ? -1 : left->shuffle_rank > right->shuffle_rank;
}

/* Shuffle the groups with the seed, then order them by size class (powers of
 * two, largest first). Big groups go first, while every part still has room,
 * and the shuffle decides the order inside a class. */
static void order_groups(split_group *groups, size_t group_count, uint64_t seed,
                         split_group **order)
{
    xoshiro256 rng;
    xoshiro_seed(&rng, seed);
    for (size_t g = 0; g < group_count; g++)
        order[g] = &groups[g];
    for (size_t g = group_count; g > 1; g--) {
        size_t other = (size_t)random_below(&rng, g);
        split_group *swap = order[g - 1];
        order[g - 1] = order[other];
        order[other] = swap;
    }
    for (size_t g = 0; g < group_count; g++)
        order[g]->shuffle_rank = g;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): order is an array of pointers */
    qsort(order, group_count, sizeof(*order), compare_by_size_class);
}

static int empty_parts(const split_plan *plan)
{
    int count = 0;
    for (int p = 0; p < PART_COUNT; p++)
        count += plan->fraction[p] > 0 && plan->group_count[p] == 0;
    return count;
}

/* Put each group where it lowers the cost most. When only as many groups
 * remain as parts are still empty, those parts take them, so every part with
 * a non-zero fraction gets at least one group. */
static void assign_greedily(split_plan *plan, split_group **order, size_t group_count)
{
    for (size_t k = 0; k < group_count; k++) {
        split_group *group = order[k];
        bool only_empty = group_count - k <= (size_t)empty_parts(plan);
        int best = -1;
        double best_change = 0;
        for (int p = 0; p < PART_COUNT; p++) {
            if (plan->fraction[p] <= 0 || (only_empty && plan->group_count[p] > 0))
                continue;
            double change = join_change(plan, p, &group->counts);
            if (best < 0 || change < best_change) {
                best = p;
                best_change = change;
            }
        }
        place_group(plan, group, best);
    }
}

/* Move single groups to another part while that lowers the total cost and
 * leaves no part empty. Returns whether any group moved. */
static bool improve_by_moves(split_plan *plan, split_group **order, size_t group_count)
{
    bool any = false;
    for (int pass = 0; pass < MAX_PASSES; pass++) {
        bool moved = false;
        for (size_t k = 0; k < group_count; k++) {
            split_group *group = order[k];
            int from = group->part;
            if (plan->group_count[from] == 1)
                continue;
            double leave = leave_change(plan, from, &group->counts);
            int best = -1;
            double best_change = -MIN_IMPROVEMENT;
            for (int p = 0; p < PART_COUNT; p++) {
                if (p == from || plan->fraction[p] <= 0)
                    continue;
                double change = leave + join_change(plan, p, &group->counts);
                if (change < best_change) {
                    best = p;
                    best_change = change;
                }
            }
            if (best >= 0) {
                place_group(plan, group, best);
                moved = true;
            }
        }
        if (!moved)
            break;
        any = true;
    }
    return any;
}

/* Change of the total cost when groups a and b trade parts. */
static double swap_change(const split_plan *plan, const split_group *a, const split_group *b)
{
    int p = a->part, q = b->part;
    split_counts new_p = plan->filled[p], new_q = plan->filled[q];
    subtract_counts(&new_p, &a->counts, plan->label_count);
    add_counts(&new_p, &b->counts, plan->label_count);
    subtract_counts(&new_q, &b->counts, plan->label_count);
    add_counts(&new_q, &a->counts, plan->label_count);
    return part_cost(plan, p, &new_p) - part_cost(plan, p, &plan->filled[p]) +
           part_cost(plan, q, &new_q) - part_cost(plan, q, &plan->filled[q]);
}

/* Swap pairs of groups in different parts while that lowers the total cost.
 * Swaps escape the local minima of single moves, for example when two large
 * groups sit in the wrong parts. Returns whether any pair was swapped. */
static bool improve_by_swaps(split_plan *plan, split_group **order, size_t group_count)
{
    bool any = false;
    for (int pass = 0; pass < MAX_PASSES; pass++) {
        bool swapped = false;
        for (size_t i = 0; i < group_count; i++) {
            split_group *a = order[i], *best = NULL;
            double best_change = -MIN_IMPROVEMENT;
            for (size_t j = 0; j < group_count; j++) {
                if (order[j]->part == a->part)
                    continue;
                double change = swap_change(plan, a, order[j]);
                if (change < best_change) {
                    best = order[j];
                    best_change = change;
                }
            }
            if (best != NULL) {
                int from = a->part;
                place_group(plan, a, best->part);
                place_group(plan, best, from);
                swapped = true;
            }
        }
        if (!swapped)
            break;
        any = true;
    }
    return any;
}

/* Alternate moves and swaps until neither lowers the cost. Every accepted
 * change lowers it, so the search ends, and the round limit bounds the time.
 * Swaps consider only the first MAX_SWAP_GROUPS groups of the order (the
 * largest), because their cost grows with the square of the count. */
static void improve_locally(split_plan *plan, split_group **order, size_t group_count)
{
    size_t swap_count = group_count < MAX_SWAP_GROUPS ? group_count : MAX_SWAP_GROUPS;
    for (int round = 0; round < MAX_PASSES; round++) {
        improve_by_moves(plan, order, group_count);
        if (!improve_by_swaps(plan, order, swap_count))
            break;
    }
}

static ap_status check_fractions(double val_fraction, double test_fraction, ap_error *err)
{
    bool valid = isfinite(val_fraction) && isfinite(test_fraction) && val_fraction >= 0 &&
                 test_fraction >= 0 && val_fraction + test_fraction < 1;
    if (!valid)
        return ap_error_set(err, AP_ERR_INVALID,
                            "split: validation fraction %g and test fraction %g must each be at "
                            "least 0 and add up to less than 1",
                            val_fraction, test_fraction);
    return AP_OK;
}

static ap_status check_group_count(size_t group_count, const double fraction[PART_COUNT],
                                   ap_error *err)
{
    size_t needed = 0;
    for (int p = 0; p < PART_COUNT; p++)
        needed += fraction[p] > 0;
    if (group_count >= needed)
        return AP_OK;
    return ap_error_set(err, AP_ERR_INVALID,
                        "split: the manifest has %zu group(s), but the split needs %zu, one "
                        "for each part with a fraction above 0; add images from more groups or "
                        "set split.val_fraction or split.test_fraction to 0",
                        group_count, needed);
}

static ap_status plan_split(const ap_manifest *manifest, const double fraction[PART_COUNT],
                            uint64_t seed, size_t *group_of_row, split_group **groups_out,
                            ap_error *err)
{
    size_t group_count = 0;
    ap_status status = number_groups(manifest, group_of_row, &group_count, err);
    if (status != AP_OK)
        return status;
    status = check_group_count(group_count, fraction, err);
    if (status != AP_OK)
        return status;

    split_group *groups = calloc(group_count, sizeof(*groups));
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    split_group **order = malloc(group_count * sizeof(*order));
    if (groups == NULL || order == NULL) {
        free(groups);
        free(order);
        return ap_error_set(err, AP_ERR_NOMEM, "split: cannot allocate %zu groups", group_count);
    }
    count_group_rows(manifest, group_of_row, groups);
    for (size_t g = 0; g < group_count; g++)
        groups[g].part = -1;

    split_plan plan;
    init_plan(&plan, groups, group_count, manifest->label_count, fraction);
    order_groups(groups, group_count, seed, order);
    assign_greedily(&plan, order, group_count);
    improve_locally(&plan, order, group_count);
    free(order);
    *groups_out = groups;
    return AP_OK;
}

ap_status ap_split_assign(const ap_manifest *manifest, double val_fraction, double test_fraction,
                          uint64_t seed, uint8_t *assignment, ap_error *err)
{
    ap_status status = check_fractions(val_fraction, test_fraction, err);
    if (status != AP_OK)
        return status;
    if (manifest->row_count == 0)
        return ap_error_set(err, AP_ERR_INVALID, "split: the manifest has no rows");
    double fraction[PART_COUNT] = {1 - val_fraction - test_fraction, val_fraction, test_fraction};

    size_t *group_of_row = malloc(manifest->row_count * sizeof(size_t));
    if (group_of_row == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "split: cannot allocate %zu rows",
                            manifest->row_count);
    split_group *groups = NULL;
    status = plan_split(manifest, fraction, seed, group_of_row, &groups, err);
    if (status == AP_OK)
        for (size_t i = 0; i < manifest->row_count; i++)
            assignment[i] = (uint8_t)groups[group_of_row[i]].part;
    free(groups);
    free(group_of_row);
    return status;
}

/* ---- split.csv ---------------------------------------------------------- */

typedef struct {
    char *data;
    size_t length;
    size_t capacity;
} text_buffer;

static bool append_bytes(text_buffer *buffer, const char *bytes, size_t count)
{
    if (buffer->length + count + 1 > buffer->capacity) {
        size_t capacity = buffer->capacity ? buffer->capacity : 4096;
        while (capacity < buffer->length + count + 1)
            capacity *= 2;
        char *grown = realloc(buffer->data, capacity);
        if (grown == NULL)
            return false;
        buffer->data = grown;
        buffer->capacity = capacity;
    }
    memcpy(buffer->data + buffer->length, bytes, count);
    buffer->length += count;
    buffer->data[buffer->length] = '\0';
    return true;
}

/* Append a CSV field, quoted when it contains a comma, quote or line break,
 * or starts or ends with a blank (which a reader trims from header names). */
static bool append_field(text_buffer *buffer, const char *field)
{
    size_t length = strlen(field);
    bool blank_edge = length > 0 && (field[0] == ' ' || field[0] == '\t' ||
                                     field[length - 1] == ' ' || field[length - 1] == '\t');
    if (strpbrk(field, ",\"\r\n") == NULL && !blank_edge)
        return append_bytes(buffer, field, length);
    if (!append_bytes(buffer, "\"", 1))
        return false;
    for (const char *c = field; *c != '\0'; c++) {
        if (*c == '"' && !append_bytes(buffer, "\"", 1))
            return false;
        if (!append_bytes(buffer, c, 1))
            return false;
    }
    return append_bytes(buffer, "\"", 1);
}

ap_status ap_split_write(const char *path, const ap_manifest *manifest, const uint8_t *assignment,
                         ap_error *err)
{
    text_buffer buffer = {0};
    bool ok = append_bytes(&buffer, "file,group,part\n", 16);
    for (size_t i = 0; ok && i < manifest->row_count; i++) {
        if (assignment[i] >= PART_COUNT) {
            free(buffer.data);
            return ap_error_set(err, AP_ERR_INVALID, "%s: row %zu (file %s) has invalid part %u",
                                path, i, manifest->rows[i].file, (unsigned)assignment[i]);
        }
        ok = append_field(&buffer, manifest->rows[i].file) && append_bytes(&buffer, ",", 1) &&
             append_field(&buffer, manifest->rows[i].group) && append_bytes(&buffer, ",", 1) &&
             append_field(&buffer, part_names[assignment[i]]) && append_bytes(&buffer, "\n", 1);
    }
    if (!ok) {
        free(buffer.data);
        return ap_error_set(err, AP_ERR_NOMEM, "%s: cannot allocate the split text", path);
    }
    ap_status status = ap_write_atomic(path, buffer.data, buffer.length, err);
    free(buffer.data);
    return status;
}

typedef struct {
    int file;
    int group;
    int part;
} split_columns;

static ap_status find_split_columns(const ap_csv_table *table, const char *path,
                                    split_columns *columns, ap_error *err)
{
    const char *names[3] = {"file", "group", "part"};
    int *indexes[3] = {&columns->file, &columns->group, &columns->part};
    for (int i = 0; i < 3; i++) {
        *indexes[i] = ap_csv_column(table, names[i]);
        if (*indexes[i] < 0) {
            char found[512];
            ap_csv_describe_columns(table, found, sizeof(found));
            return ap_error_set(err, AP_ERR_FORMAT,
                                "%s:1: column \"%s\" not found (columns: %s); expected "
                                "file,group,part",
                                path, names[i], found);
        }
    }
    return AP_OK;
}

static int parse_part_name(const char *name)
{
    for (int p = 0; p < PART_COUNT; p++)
        if (strcmp(name, part_names[p]) == 0)
            return p;
    return -1;
}

/* Manifest rows sorted by file name, for lookups by binary search. */
static name_entry *index_files(const ap_manifest *manifest)
{
    name_entry *entries =
        malloc((manifest->row_count ? manifest->row_count : 1) * sizeof(*entries));
    if (entries == NULL)
        return NULL;
    for (size_t i = 0; i < manifest->row_count; i++)
        entries[i] = (name_entry){manifest->rows[i].file, i};
    qsort(entries, manifest->row_count, sizeof(*entries), compare_name_entries);
    return entries;
}

static long find_file(const name_entry *entries, size_t count, const char *file)
{
    size_t low = 0, high = count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        int order = strcmp(entries[middle].name, file);
        if (order == 0)
            return (long)entries[middle].row;
        if (order < 0)
            low = middle + 1;
        else
            high = middle;
    }
    return -1;
}

/* State of a split.csv check: the line each manifest row was seen on and
 * the part and line each group was first seen with. */
typedef struct {
    const ap_manifest *manifest;
    const char *path;
    name_entry *files;
    size_t *group_of_row;
    int *row_line;
    int *group_part;
    int *group_line;
} split_reader;

static ap_status read_split_row(split_reader *reader, const ap_csv_table *table,
                                const split_columns *columns, size_t index, uint8_t *assignment,
                                ap_error *err)
{
    char **fields = table->fields + index * (size_t)table->column_count;
    int line = table->lines[index];
    const char *file = fields[columns->file];
    long row = find_file(reader->files, reader->manifest->row_count, file);
    if (row < 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "%s:%d: file \"%s\" is not in the manifest; the split is out of "
                            "date, so delete it to make a new one",
                            reader->path, line, file);
    if (reader->row_line[row] != 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "%s:%d: file \"%s\" is listed twice (lines %d and %d)", reader->path,
                            line, file, reader->row_line[row], line);
    reader->row_line[row] = line;

    const char *group = fields[columns->group];
    if (strcmp(group, reader->manifest->rows[row].group) != 0)
        return ap_error_set(
            err, AP_ERR_INVALID,
            "%s:%d: file \"%s\" is in group \"%s\", but the manifest puts it in "
            "group \"%s\"; the split is out of date, so delete it to make a new one",
            reader->path, line, file, group, reader->manifest->rows[row].group);
    int part = parse_part_name(fields[columns->part]);
    if (part < 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "%s:%d: invalid part \"%s\"; expected train, val or test", reader->path,
                            line, fields[columns->part]);

    size_t group_id = reader->group_of_row[row];
    if (reader->group_part[group_id] < 0) {
        reader->group_part[group_id] = part;
        reader->group_line[group_id] = line;
    } else if (reader->group_part[group_id] != part) {
        return ap_error_set(err, AP_ERR_INVALID,
                            "%s:%d: group \"%s\" is in %s here but in %s on line %d; a group "
                            "must stay in one part",
                            reader->path, line, group, part_names[part],
                            part_names[reader->group_part[group_id]], reader->group_line[group_id]);
    }
    assignment[row] = (uint8_t)part;
    return AP_OK;
}

static ap_status check_all_listed(const split_reader *reader, ap_error *err)
{
    for (size_t i = 0; i < reader->manifest->row_count; i++)
        if (reader->row_line[i] == 0)
            return ap_error_set(err, AP_ERR_INVALID,
                                "%s: file \"%s\" (manifest line %d) is missing; the split is out "
                                "of date, so delete it to make a new one",
                                reader->path, reader->manifest->rows[i].file,
                                reader->manifest->rows[i].line);
    return AP_OK;
}

static ap_status check_split_table(split_reader *reader, const ap_csv_table *table,
                                   uint8_t *assignment, ap_error *err)
{
    split_columns columns;
    ap_status status = find_split_columns(table, reader->path, &columns, err);
    if (status != AP_OK)
        return status;
    size_t group_count = 0;
    status = number_groups(reader->manifest, reader->group_of_row, &group_count, err);
    if (status != AP_OK)
        return status;
    for (size_t g = 0; g < group_count; g++)
        reader->group_part[g] = -1;
    for (size_t i = 0; i < table->row_count && status == AP_OK; i++)
        status = read_split_row(reader, table, &columns, i, assignment, err);
    if (status != AP_OK)
        return status;
    return check_all_listed(reader, err);
}

ap_status ap_split_read(const char *path, const ap_manifest *manifest, uint8_t *assignment,
                        ap_error *err)
{
    uint8_t *text = NULL;
    size_t size = 0;
    ap_status status = ap_read_file(path, SPLIT_MAX_BYTES, &text, &size, err);
    if (status != AP_OK)
        return status;
    ap_csv_table table;
    status = ap_csv_parse((const char *)text, size, path, &table, err);
    free(text);
    if (status != AP_OK)
        return status;

    size_t rows = manifest->row_count ? manifest->row_count : 1;
    split_reader reader = {manifest,
                           path,
                           index_files(manifest),
                           malloc(rows * sizeof(size_t)),
                           calloc(rows, sizeof(int)),
                           malloc(rows * sizeof(int)),
                           malloc(rows * sizeof(int))};
    uint8_t *parts = malloc(rows);
    if (reader.files == NULL || reader.group_of_row == NULL || reader.row_line == NULL ||
        reader.group_part == NULL || reader.group_line == NULL || parts == NULL)
        status = ap_error_set(err, AP_ERR_NOMEM, "%s: cannot allocate the split check", path);
    else
        status = check_split_table(&reader, &table, parts, err);
    if (status == AP_OK)
        memcpy(assignment, parts, manifest->row_count);
    free(parts);
    free(reader.files);
    free(reader.group_of_row);
    free(reader.row_line);
    free(reader.group_part);
    free(reader.group_line);
    ap_csv_free(&table);
    return status;
}
