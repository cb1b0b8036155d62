#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pipeline/common/log.h"
#include "pipeline/eval/confusion.h"
#include "pipeline/parallel/data_parallel.h"
#include "pipeline/train/predict.h"
#include "pipeline/train/trainer_internal.h"

/* Return value as a JSON number, or null for an undefined (NAN) metric, which JSON
 * cannot represent. */
static json_t *json_number_or_null(double value)
{
    return isfinite(value) ? json_real(value) : json_null();
}

static json_t *label_metrics(const float *probabilities, const int8_t *targets, size_t count,
                             int labels, int label)
{
    ap_confusion c;
    ap_confusion_count(probabilities, targets, count, labels, label, 0.5f, &c);
    return json_pack("{s:o, s:o, s:o, s:o, s:I, s:I}", "accuracy",
                     json_number_or_null(ap_confusion_accuracy(&c)), "precision",
                     json_number_or_null(ap_confusion_precision(&c)), "recall",
                     json_number_or_null(ap_confusion_recall(&c)), "f1",
                     json_number_or_null(ap_confusion_f1(&c)), "positives",
                     (json_int_t)(c.true_positive + c.false_negative), "negatives",
                     (json_int_t)(c.true_negative + c.false_positive));
}

/* Evaluate one split: the mean masked loss and per-label metrics at threshold 0.5. */
ap_status trainer_evaluate(trainer *t, ap_split_part part, double *loss, json_t **metrics,
                           ap_error *err)
{
    size_t count = t->data.part_count[part];
    size_t labels = (size_t)t->cfg->data.label_count;
    float *logits = calloc(count * labels, sizeof(float));
    int8_t *targets = malloc(count * labels);
    if (logits == NULL || targets == NULL) {
        free(logits);
        free(targets);
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate evaluation buffers");
    }
    ap_status status =
        t->device.predict != NULL
            ? t->device.predict(t->device.state, t->data.part_images[part], count, logits, err)
            : ap_dp_predict(t->comm, t->net, &t->data.images, t->data.part_images[part], count,
                            t->cfg->data.mean, t->cfg->data.std, logits, err);
    if (status == AP_OK) {
        ap_gather_labels(&t->data.images, t->data.part_images[part], count, targets);
        *loss = trainer_mean_loss(t, logits, targets, (int)count, NULL);
        ap_sigmoid_inplace(logits, count * labels);
        *metrics = json_object();
        for (size_t label = 0; label < labels; label++)
            json_object_set_new(*metrics, t->cfg->data.labels[label],
                                label_metrics(logits, targets, count, (int)labels, (int)label));
    }
    free(logits);
    free(targets);
    return status;
}

/* Append line (whose reference this takes) to train_log.jsonl of rank 0. A
 * line that cannot be built or written is an error, so the log never misses
 * an epoch or a step without saying so. */
static ap_status write_log_line(trainer *t, json_t *line, const char *event, ap_error *err)
{
    if (t->log_file == NULL) {
        json_decref(line);
        return AP_OK;
    }
    char *text = line != NULL ? json_dumps(line, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(line);
    if (text == NULL)
        return ap_error_set(err, AP_ERR_NOMEM,
                            "cannot build the %s line of %s/train_log.jsonl (out of memory)", event,
                            t->run_dir);
    bool written = fprintf(t->log_file, "%s\n", text) >= 0 && fflush(t->log_file) == 0;
    int saved_errno = errno;
    free(text);
    if (!written)
        return ap_error_set(err, AP_ERR_IO,
                            "cannot write the %s line to %s/train_log.jsonl: %s; check the "
                            "file system (free space, permissions), then resume the run",
                            event, t->run_dir, strerror(saved_errno));
    return AP_OK;
}

/* Return a metric of a per-label object, or NAN when it is null (undefined). */
static double json_metric(const json_t *metrics, const char *name)
{
    const json_t *value = json_object_get(metrics, name);
    return json_is_number(value) ? json_number_value(value) : NAN;
}

/* Write value with decimals digits after the point, or "n/a" when it is
 * undefined (NAN or infinite), for the human-readable log. */
static const char *format_number(double value, int decimals, char *out, size_t size)
{
    if (isfinite(value))
        snprintf(out, size, "%.*f", decimals, value);
    else
        snprintf(out, size, "n/a");
    return out;
}

ap_status trainer_log_epoch(trainer *t, double train_loss, double val_loss, json_t *metrics,
                            double images_per_second, ap_error *err)
{
    char line[1024], train_text[32], val_text[32];
    int used =
        snprintf(line, sizeof(line), "epoch %ld/%d train_loss %s val_loss %s", t->position.epoch,
                 t->cfg->train.epochs, format_number(train_loss, 4, train_text, sizeof(train_text)),
                 format_number(val_loss, 4, val_text, sizeof(val_text)));
    const char *label;
    json_t *value;
    json_object_foreach(metrics, label, value)
    {
        if (used >= (int)sizeof(line))
            break;
        char accuracy[32], recall[32], precision[32];
        used += snprintf(
            line + used, sizeof(line) - (size_t)used, " | %s acc %s rec %s prec %s", label,
            format_number(json_metric(value, "accuracy"), 3, accuracy, sizeof(accuracy)),
            format_number(json_metric(value, "recall"), 3, recall, sizeof(recall)),
            format_number(json_metric(value, "precision"), 3, precision, sizeof(precision)));
    }
    AP_INFO("%s", line);
    json_t *entry = json_pack(
        "{s:s, s:I, s:I, s:o, s:o, s:o, s:O}", "event", "epoch", "epoch",
        (json_int_t)t->position.epoch, "step", (json_int_t)t->position.global_step, "train_loss",
        json_number_or_null(train_loss), "val_loss", json_number_or_null(val_loss),
        "images_per_second", json_number_or_null(images_per_second), "val", metrics);
    return write_log_line(t, entry, "epoch", err);
}

ap_status trainer_log_step(trainer *t, float loss, double lr, double images_per_second,
                           ap_error *err)
{
    AP_INFO("epoch %ld step %ld loss %.4f lr %.3e images/s %.1f", t->position.epoch + 1,
            t->position.global_step, (double)loss, lr, images_per_second);
    json_t *entry =
        json_pack("{s:s, s:I, s:I, s:o, s:o, s:o}", "event", "step", "epoch",
                  (json_int_t)(t->position.epoch + 1), "step", (json_int_t)t->position.global_step,
                  "loss", json_number_or_null(loss), "lr", json_number_or_null(lr),
                  "images_per_second", json_number_or_null(images_per_second));
    return write_log_line(t, entry, "step", err);
}
