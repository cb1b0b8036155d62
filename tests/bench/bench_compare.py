"""Run apiary's and PyTorch's benchmarks side by side and print the ratios.

Called by tests/bench/bench_vs_torch.sh, which builds bench_apiary and writes
the decoded images first. On a shared machine a single run is noisy, so
every variant runs --reps times in alternating order (each repetition starts
with a different variant), and the figures are medians. The 1-minute load
average before each run is kept with it.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def run_json(command, env=None):
    """Run a benchmark process and return the JSON objects it printed."""
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode == 77:
        return None
    if result.returncode != 0:
        sys.exit(f"benchmark failed ({result.returncode}): {' '.join(command)}\n{result.stderr}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


class Bench:
    def __init__(self, args):
        self.args = args
        self.records = []
        self.parameters = {}

    def apiary(self, mode, *extra, threads=None, wait_policy=None):
        command = [self.args.apiary, mode, "--config", self.args.config,
                   "--threads", str(threads or self.args.threads), *extra]
        env = dict(os.environ)
        # apiary score and serve start with OMP_WAIT_POLICY=passive (pipeline/cli/main.c).
        policy = wait_policy or ("passive" if mode == "score" else self.args.train_wait_policy)
        if policy and "OMP_WAIT_POLICY" not in env:
            env["OMP_WAIT_POLICY"] = policy
        return run_json(command, env)

    def torch(self, mode, *extra, threads=None, wait_policy=None):
        command = [sys.executable, self.args.torch_script, mode, "--data", self.args.data,
                   "--threads", str(threads or self.args.threads), "--device", self.args.device, *extra]
        env = dict(os.environ)
        if wait_policy:
            env["OMP_WAIT_POLICY"] = wait_policy
        return run_json(command, env)

    def check_network(self, name, label, record):
        """Stop when a variant ran a network of another size than the first variant's."""
        count = record.get("parameters")
        if count is None:
            return
        first = self.parameters.setdefault(name, (label, count))
        if first[1] != count:
            sys.exit(f"{name}: {label} ran a network of {count} parameters but {first[0]} one of "
                     f"{first[1]}; both tools must build the network of --config")

    def alternate(self, name, variants):
        """Run each (label, function) variant --reps times, rotating the order."""
        samples = {label: [] for label, _ in variants}
        for rep in range(self.args.reps):
            shift = rep % len(variants)
            for label, function in variants[shift:] + variants[:shift]:
                load = os.getloadavg()[0]
                output = function()
                if output is None:
                    samples.pop(label, None)
                    continue
                record = output[-1]
                self.check_network(name, label, record)
                record.update(label=label, load_average=load, rep=rep, benchmark=name)
                self.records.append(record)
                if label in samples:
                    samples[label].append(record["images_per_second"])
                print(f"  {name} rep {rep + 1} {label:24s} {record['images_per_second']:9.1f} images/s"
                      f"  (load {load:.2f})", flush=True)
        return {label: values for label, values in samples.items() if values}

    def summarise(self, name, samples, reference):
        print(f"\n{name}: median images/s over {self.args.reps} alternating runs, "
              f"{self.args.threads} threads")
        medians = {label: statistics.median(values) for label, values in samples.items()}
        loads = [r["load_average"] for r in self.records if r.get("benchmark") == name]
        for label, median in medians.items():
            values = samples[label]
            print(f"  {label:24s} {median:9.1f}  (min {min(values):.1f}, max {max(values):.1f})")
        others = [label for label in medians if label != reference]
        for label in others:
            print(f"  ratio {reference} / {label}: {medians[reference] / medians[label]:.2f}")
        if loads:
            print(f"  load average during the runs: {min(loads):.2f} to {max(loads):.2f}")
        summary = {"benchmark": name, "medians": medians, "samples": samples,
                   "load_min": min(loads) if loads else None, "load_max": max(loads) if loads else None,
                   "ratios": {label: medians[reference] / medians[label] for label in others}}
        self.records.append({"summary": summary})
        return summary


def bench_train(bench):
    args = bench.args
    steps = ["--warmup", str(args.warmup), "--steps", str(args.steps)]
    variants = [
        ("apiary", lambda: bench.apiary("train", *steps)),
        ("torch eager", lambda: bench.torch("train", *steps)),
        ("torch eager channels-last", lambda: bench.torch("train", "--channels-last", *steps)),
    ]
    if args.passive_variants:
        variants += [
            ("apiary passive", lambda: bench.apiary("train", *steps, wait_policy="passive")),
            ("torch channels-last passive",
             lambda: bench.torch("train", "--channels-last", *steps, wait_policy="passive")),
        ]
    if args.compile:
        variants.append(("torch.compile channels-last",
                         lambda: bench.torch("train", "--compile", "--channels-last", *steps)))
    return bench.summarise("train", bench.alternate("train", variants), "apiary")


def bench_score(bench):
    args = bench.args
    steps = ["--warmup", str(args.warmup), "--steps", str(args.steps * 3)]
    variants = [
        ("apiary", lambda: bench.apiary("score", *steps)),
        ("torch channels-last", lambda: bench.torch("score", "--channels-last", *steps)),
        ("torch", lambda: bench.torch("score", *steps)),
    ]
    if args.unfused_variant:
        variants.insert(1, ("apiary unfused", lambda: bench.apiary("score", "--unfused", *steps)))
    if args.passive_variants:
        variants.append(("torch channels-last passive",
                         lambda: bench.torch("score", "--channels-last", *steps, wait_policy="passive")))
    if args.compile:
        variants.append(("torch.compile channels-last",
                         lambda: bench.torch("score", "--compile", "--channels-last", *steps)))
    return bench.summarise("score", bench.alternate("score", variants), "apiary")


def bench_decode(bench):
    args = bench.args
    torch_results = {}

    def torch_decoder(name):
        def run():
            if name not in torch_results or not torch_results[name]:
                output = bench.torch("decode", "--image-root", args.image_root, "--steps", "2")
                for record in output:
                    torch_results.setdefault(record["tool"], []).append(record)
            return [torch_results[name].pop()]
        return run

    variants = [
        ("apiary", lambda: bench.apiary("decode", "--steps", "2")),
        ("pillow", torch_decoder("pillow")),
        ("torchvision", torch_decoder("torchvision")),
    ]
    return bench.summarise("decode", bench.alternate("decode", variants), "apiary")


def bench_ops(bench):
    output = bench.apiary("ops", "--warmup", "3", "--steps", str(max(5, bench.args.steps)))
    print(f"\nops: median milliseconds per call, batch {output[0]['batch']}, "
          f"{bench.args.threads} threads, measured FMA peak {output[0]['peak_gflops']:.1f} GFLOP/s "
          f"({output[0]['isa']})")
    for record in output:
        if record["bench"] == "ops":
            print(f"  {record['layer']:30s} {record['op']:22s} {record['milliseconds']:8.3f} ms "
                  f"{record['gflops']:7.2f} GFLOP/s {100 * record['peak_share']:5.1f}% of peak")
        else:
            print(f"  all ops: {record['milliseconds']:.2f} ms")
    load = os.getloadavg()[0]
    for record in output:
        record.update(benchmark="ops", load_average=load)
    bench.records.extend(output)


def bench_memory(bench):
    output = bench.apiary("memory", "--epochs", str(bench.args.epochs))
    print(f"\nmemory: resident set after each training epoch ({bench.args.threads} threads)")
    for record in output:
        print(f"  epoch {record['epoch']:3d}  RSS {record['rss_kib'] / 1024:7.1f} MiB  "
              f"peak {record['peak_rss_kib'] / 1024:7.1f} MiB")
    growth = output[-1]["rss_kib"] - output[1]["rss_kib"] if len(output) > 1 else 0
    print(f"  growth from epoch 2 to {output[-1]['epoch']}: {growth} KiB")
    for record in output:
        record.update(benchmark="memory")
    bench.records.extend(output)


def svg_bar_chart(summaries, path):
    """Write a grouped horizontal bar chart of median images/s, one group per benchmark."""
    rows = []
    for summary in summaries:
        for label, median in summary["medians"].items():
            rows.append((summary["benchmark"], label, median))
    width, bar, gap, left = 760, 18, 14, 250
    height = 40 + len(rows) * (bar + 4) + len(summaries) * gap
    scale_max = {s["benchmark"]: max(s["medians"].values()) for s in summaries}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<text x="10" y="20" font-size="14">Median images/s, apiary and PyTorch '
             f'(bars scaled per benchmark)</text>']
    y, previous = 34, None
    for name, label, median in rows:
        if name != previous:
            y += gap if previous else 0
            previous = name
        length = (width - left - 90) * median / scale_max[name]
        colour = "#d08000" if label == "apiary" else "#4070b0"
        parts.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{name}: {label}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{length:.1f}" height="{bar}" fill="{colour}"/>')
        parts.append(f'<text x="{left + length + 4:.1f}" y="{y + 13}">{median:.0f}</text>')
        y += bar + 4
    parts.append("</svg>")
    with open(path, "w") as file:
        file.write("\n".join(parts) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", choices=["train", "score", "decode", "ops", "memory", "all"])
    parser.add_argument("--apiary", required=True, help="bench_apiary executable")
    parser.add_argument("--torch-script", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--data", required=True, help="bench_apiary dump file")
    parser.add_argument("--image-root", required=True)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--train-wait-policy", default="",
                        help="OMP_WAIT_POLICY of apiary's training runs (default: unset, as apiary train)")
    parser.add_argument("--passive-variants", action="store_true",
                        help="add runs with OMP_WAIT_POLICY=passive for apiary train and PyTorch")
    parser.add_argument("--unfused-variant", action="store_true",
                        help="add apiary scoring without folded batch norms (the unoptimised path)")
    parser.add_argument("--json", help="write every run and summary to this file")
    parser.add_argument("--svg", help="write a bar chart of the medians to this file")
    args = parser.parse_args()

    bench = Bench(args)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    chosen = ["train", "score", "decode", "ops", "memory"] if args.benchmark == "all" else [args.benchmark]
    functions = {"train": bench_train, "score": bench_score, "decode": bench_decode,
                 "ops": bench_ops, "memory": bench_memory}
    summaries = [s for s in (functions[name](bench) for name in chosen) if s]
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"started": started, "threads": args.threads, "device": args.device,
                       "records": bench.records}, file, indent=1)
    if args.svg and summaries:
        svg_bar_chart(summaries, args.svg)


if __name__ == "__main__":
    main()
