"""Child: the floor. A plain boto3 copier: list, then get_object -> put_object on 32 threads.

    python -m bench.workers.boto3_copy --source-bucket S --dest-bucket D [--threads 32]

No journal, no checksums of its own, no retries beyond botocore's defaults,
and each object is held whole in memory between the GET and the PUT: the
least a client can do to move bytes between two services. Credentials come
from the environment (BENCH_S3_ENDPOINT, BENCH_S3_ACCESS_KEY, BENCH_S3_SECRET_KEY).
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-bucket", required=True)
    parser.add_argument("--dest-bucket", required=True)
    parser.add_argument("--threads", type=int, default=32)
    args = parser.parse_args(argv)

    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=os.environ["BENCH_S3_ENDPOINT"],
        aws_access_key_id=os.environ["BENCH_S3_ACCESS_KEY"],
        aws_secret_access_key=os.environ["BENCH_S3_SECRET_KEY"],
        region_name="us-east-1",
        config=Config(max_pool_connections=args.threads, s3={"addressing_style": "path"}),
    )
    keys = [
        item["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=args.source_bucket)
        for item in page.get("Contents", [])
    ]

    def copy(key: str) -> None:
        response = client.get_object(Bucket=args.source_bucket, Key=key)
        body = response["Body"].read()
        client.put_object(Bucket=args.dest_bucket, Key=key, Body=body, ContentType=response.get("ContentType", "application/octet-stream"))

    failures = 0
    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        for future in [pool.submit(copy, key) for key in keys]:
            try:
                future.result()
            except Exception as err:  # noqa: BLE001 - counted; the harness checks the destination anyway
                failures += 1
                if failures <= 3:
                    print(f"boto3_copy: {type(err).__name__}: {err}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
