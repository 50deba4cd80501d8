"""A small process that starts every measured child, so ru_maxrss is the child's own.

Why: Linux carries the parent's high-water RSS into a child's ru_maxrss when
the child is forked (or vforked) and execs: the exec'd program reports at
least the RSS its parent had. Forked from the harness, which holds boto3,
polars and listings, every contender would show the harness's 100+ MiB. This
launcher is started first, while the harness is still small, imports only
the standard library (`python -S`), and forks every child from its own
~10 MiB image; no contender comes near that floor.

Protocol: one JSON request per line on stdin ({"argv", "env", "cwd", "log",
"timeout"}), one JSON answer per line on stdout ({"wall", "user", "sys",
"max_rss_kib", "exit_code", "timed_out"}). EOF on stdin ends it.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time


def run(request):
    with open(request["log"], "ab") as log:
        log.write(("$ " + " ".join(request["argv"]) + "\n").encode())
        log.flush()
        started = time.perf_counter()
        popen = subprocess.Popen(
            request["argv"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=request["env"],
            cwd=request.get("cwd"),
        )
    finished = threading.Event()
    timed_out = threading.Event()

    def watchdog():
        if not finished.wait(request["timeout"]):
            timed_out.set()
            try:
                os.kill(popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    threading.Thread(target=watchdog, daemon=True).start()
    _, status, usage = os.wait4(popen.pid, 0)
    wall = time.perf_counter() - started
    finished.set()
    popen.returncode = os.waitstatus_to_exitcode(status)
    return {
        "wall": wall,
        "user": usage.ru_utime,
        "sys": usage.ru_stime,
        "max_rss_kib": usage.ru_maxrss,
        "exit_code": popen.returncode,
        "timed_out": timed_out.is_set(),
    }


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = run(json.loads(line))
        except Exception as err:  # noqa: BLE001 - reported to the harness, which decides
            answer = {"error": f"{type(err).__name__}: {err}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
