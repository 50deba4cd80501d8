"""Child processes the harness measures: each does one job and writes its own figures as JSON."""
