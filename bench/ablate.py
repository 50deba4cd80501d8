"""Run the `migrate` CLI with parts of it switched off, to measure what each part costs.

    BENCH_ABLATE=nouseragent,unsignedpayload python bench/ablate.py run PLAN --no-progress ...

A profiler says where samples land; switching a part off and measuring the
CPU saved says what it costs, without the profiler's own distortions (py-spy
--gil credits the last GIL holder, cProfile inflates call-heavy code). The
switches monkeypatch this process only; nothing in migrate/ changes.
Results from these runs are not valid migrations (e.g. without the journal
nothing is resumable): use them for accounting only.

Switches (comma-separated in BENCH_ABLATE):

- `nojournal`: TransferJournal.begin/done do nothing.
- `nofingerprint`: record_fingerprint returns a constant.
- `noretry`: call_with_retries calls once, no tenacity.
- `nouseragent`: botocore builds its User-Agent string once, not per request.
- `unsignedpayload`: botocore signs UNSIGNED-PAYLOAD over plain HTTP too, as
  it does over HTTPS (real AWS): no SHA-256 pass over each body for the signature.
- `cprofile`: profile every thread with cProfile on thread CPU time; the
  merged stats go to $BENCH_CPROFILE_OUT.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable


def _apply(switches: set[str]) -> None:
    import migrate.journal as journal
    import migrate.transfer as transfer

    if "nojournal" in switches:
        journal.TransferJournal.begin = lambda self, record, fingerprint: None  # type: ignore[method-assign]
        journal.TransferJournal.done = lambda self, record, **kw: None  # type: ignore[method-assign]
    if "nofingerprint" in switches:
        transfer.record_fingerprint = lambda record, **kw: "constant"  # type: ignore[assignment]
    if "noretry" in switches:
        transfer.call_with_retries = lambda func, **kw: func()  # type: ignore[assignment]
    if "nouseragent" in switches:
        import botocore.useragent as useragent

        build = useragent.UserAgentString.to_string
        cache: dict[str, str] = {}

        def to_string(self: Any) -> str:
            if "value" not in cache:
                cache["value"] = build(self)
            return cache["value"]

        useragent.UserAgentString.to_string = to_string  # type: ignore[method-assign]
    if "unsignedpayload" in switches:
        from botocore.auth import S3SigV4Auth

        S3SigV4Auth._should_sha256_sign_payload = lambda self, request: False  # type: ignore[method-assign]


def _profiled(main: Callable[[list[str]], int], argv: list[str], out: str) -> int:
    import cProfile
    import pstats
    import threading
    import time

    profiles: list[cProfile.Profile] = []
    run_thread = threading.Thread.run

    def run(self: threading.Thread) -> None:
        profile = cProfile.Profile(timer=time.thread_time)
        profiles.append(profile)
        profile.enable()
        try:
            run_thread(self)
        finally:
            profile.disable()

    threading.Thread.run = run  # type: ignore[method-assign]
    main_profile = cProfile.Profile(timer=time.thread_time)
    profiles.append(main_profile)
    main_profile.enable()
    try:
        return main(argv)
    finally:
        main_profile.disable()
        merged: pstats.Stats | None = None
        for profile in profiles:
            profile.create_stats()
            if not profile.stats:  # type: ignore[attr-defined]
                continue
            if merged is None:
                merged = pstats.Stats(profile)
            else:
                merged.add(profile)
        if merged is not None:
            merged.dump_stats(out)


def main() -> int:
    switches = {s.strip() for s in os.environ.get("BENCH_ABLATE", "").split(",") if s.strip()}
    _apply(switches)
    from migrate.cli import main as migrate_main

    if "cprofile" in switches:
        return _profiled(migrate_main, sys.argv[1:], os.environ.get("BENCH_CPROFILE_OUT", "migrate.pstats"))
    return migrate_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
