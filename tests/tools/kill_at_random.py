#!/usr/bin/env python3
"""Run a command and send it SIGKILL at a seeded random point, for tests.

    kill_at_random.py --seed N --pattern REGEX --events K [--min-events M]
                      [--max-delay S] [--signal NAME] [--log FILE] -- COMMAND...

The kill point is measured in progress, not in wall time, so a slow machine
or a sanitizer build moves it no less than a fast one: Python's
random.Random(N) draws an event count E from M (default 0) to K and a delay
D from 0 to S seconds (default 0.3), and the command is killed D seconds
after the E-th line of its stderr that matches REGEX (E = 0: D seconds after
it starts). --signal sends another signal than KILL, for example TERM. The
command's stdout and stderr are appended to --log (default: discarded).

Prints "killed after E events and D s" when the signal was sent, and
"exited with CODE" when the command ended first or after a signal other than
KILL. It exits 0 either way, so the caller decides what it expected. Exit
status 2 means invalid arguments.
"""

import argparse
import random
import re
import signal
import subprocess
import sys
import threading


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, required=True, help="seed of the kill point")
    parser.add_argument("--pattern", required=True, help="regular expression of one event")
    parser.add_argument("--events", type=int, required=True, help="most events before the kill")
    parser.add_argument("--min-events", type=int, default=0, help="fewest events before it")
    parser.add_argument("--max-delay", type=float, default=0.3, help="most seconds after it")
    parser.add_argument("--signal", default="KILL", help="signal name without SIG")
    parser.add_argument("--log", help="file for the command's stdout and stderr")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND...")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or not 0 <= args.min_events <= args.events or args.max_delay < 0:
        parser.error("need a command, 0 <= --min-events <= --events and --max-delay >= 0")
    kill_signal = getattr(signal, "SIG" + args.signal.upper(), None)
    if not isinstance(kill_signal, signal.Signals):
        parser.error(f"unknown signal {args.signal!r}")

    chooser = random.Random(args.seed)
    target = chooser.randint(args.min_events, args.events)
    delay = chooser.uniform(0, args.max_delay)
    pattern = re.compile(args.pattern)
    log = open(args.log, "ab") if args.log else open("/dev/null", "wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.PIPE)
    reached = threading.Event()
    if target == 0:
        reached.set()

    def read_stderr():
        seen = 0
        for line in process.stderr:
            log.write(line)
            log.flush()
            if pattern.search(line.decode(errors="replace")):
                seen += 1
                if seen == target:
                    reached.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    killed = False
    while process.poll() is None:
        if reached.wait(timeout=0.05):
            try:
                process.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                process.send_signal(kill_signal)
                killed = True
            break
    code = process.wait()
    reader.join()
    if killed:
        print(f"killed after {target} events and {delay:.2f} s", flush=True)
    if not killed or kill_signal != signal.SIGKILL:
        print(f"exited with {code}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
