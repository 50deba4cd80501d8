"""Benchmarks of `migrate` side by side with rclone, s5cmd and a plain boto3 copier.

Run with `bash bench/run` (or `python -m bench --help`). Not part of the test
suite: nothing here asserts on time.
"""
