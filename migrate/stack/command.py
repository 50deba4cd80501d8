"""The `migrate stack` command: `up`, `down`, `status`, `env`. Logic lives in migrate.stack.stack."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from migrate.errors import ExitStatus
from migrate.stack import defaults

if TYPE_CHECKING:
    from migrate.stack.stack import StackState


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `migrate stack ...` to the CLI."""
    parser = subparsers.add_parser(
        "stack",
        help="run a local Supabase Storage + S3 (SeaweedFS) for demos and tests",
        description="A local stack on 127.0.0.1: the bundled Supabase Storage server, SeaweedFS as S3, "
        "and a dedicated PostgreSQL database. Keys are throwaway values generated per stack.",
    )
    actions = parser.add_subparsers(dest="stack_command", metavar="ACTION")
    actions.required = True

    def with_state_dir(action: argparse.ArgumentParser) -> argparse.ArgumentParser:
        action.add_argument(
            "--state-dir",
            type=Path,
            default=defaults.DEFAULT_STATE_DIR,
            help=f"where the stack keeps its state, data and logs (default: {defaults.DEFAULT_STATE_DIR})",
        )
        return action

    start = with_state_dir(actions.add_parser("up", help="start the stack (and seed it), or show the running one"))
    start.add_argument(
        "--pg-url", default=defaults.DEFAULT_PG_URL, help=f"a PostgreSQL server to use (default: {defaults.DEFAULT_PG_URL})"
    )
    start.add_argument(
        "--database",
        default=None,
        help=f"the stack's own database, created and marked as ours (default: {defaults.DEFAULT_DATABASE}_<hash of the state dir>, one per checkout)",
    )
    start.add_argument(
        "--supabase-port",
        type=int,
        default=defaults.DEFAULT_SUPABASE_PORT,
        metavar="N",
        help=f"Supabase Storage port on 127.0.0.1 (default: {defaults.DEFAULT_SUPABASE_PORT})",
    )
    start.add_argument(
        "--s3-port",
        type=int,
        default=defaults.DEFAULT_S3_PORT,
        metavar="N",
        help=f"S3 port on 127.0.0.1 (default: {defaults.DEFAULT_S3_PORT})",
    )
    start.add_argument(
        "--seed", action=argparse.BooleanOptionalAction, default=True, help="upload the demo data set (default: yes)"
    )
    start.add_argument(
        "--large-objects", type=int, default=2, metavar="N", help="objects just over 100 MiB in the seed (default: 2)"
    )
    start.set_defaults(func=run_up)

    stop = with_state_dir(actions.add_parser("down", help="stop the stack's processes (data is kept)"))
    stop.add_argument("--purge", action="store_true", help="also delete the stack's data and drop its database")
    stop.set_defaults(func=run_down)

    with_state_dir(actions.add_parser("status", help="show each component, its endpoint and counts")).set_defaults(
        func=run_status
    )
    with_state_dir(
        actions.add_parser("env", help='print export lines for the running stack: eval "$(migrate stack env)"')
    ).set_defaults(func=run_env)


def _print_stack(state: "StackState") -> None:
    print(f"  supabase storage  {state.supabase.url}/storage/v1  (pid {state.supabase.pid}, log {state.supabase.log_path})")
    print(f"  s3 (seaweedfs)    {state.s3.endpoint_url}  (pid {state.s3.pid}, log {state.s3.log_path})")
    print(f"  postgresql        {state.database_url}")


def run_up(args: argparse.Namespace) -> ExitStatus:
    """`migrate stack up`."""
    from migrate.stack import stack

    result = stack.up(
        pg_url=args.pg_url,
        database=args.database,
        state_dir=args.state_dir,
        supabase_port=args.supabase_port,
        s3_port=args.s3_port,
        seed_data=args.seed,
        large_objects=args.large_objects,
    )
    state = result.state
    if result.already_up:
        print(f"migrate stack is already up (state: {state.path})")
    else:
        print(f"migrate stack is up (state: {state.path})")
    _print_stack(state)
    if result.seed_line:
        print(result.seed_line)
    print()
    print('# Throwaway keys for this local stack only. Load them with: eval "$(migrate stack env)"')
    for line in stack.export_lines(state):
        print(line)
    print()
    print("# Stop it with: migrate stack down   (add --purge to delete its data and database)")
    return ExitStatus.OK


def run_down(args: argparse.Namespace) -> ExitStatus:
    """`migrate stack down [--purge]`."""
    from migrate.stack import stack

    for line in stack.down(state_dir=args.state_dir, purge=args.purge):
        print(line)
    return ExitStatus.OK


def run_status(args: argparse.Namespace) -> ExitStatus:
    """`migrate stack status`: exit 0 when everything is up, 3 (INCOMPLETE) otherwise."""
    from migrate.stack import stack

    components = stack.status(state_dir=args.state_dir)
    if components is None:
        print(f"no stack recorded in {Path(args.state_dir).resolve()}; start one with `migrate stack up`")
        return ExitStatus.INCOMPLETE
    for component in components:
        print(f"{component.name:<17} {'up' if component.up else 'down':<5} {component.endpoint}  {component.detail}")
    return ExitStatus.OK if all(component.up for component in components) else ExitStatus.INCOMPLETE


def run_env(args: argparse.Namespace) -> ExitStatus:
    """`migrate stack env`: only the export lines, for `eval`."""
    from migrate.stack import stack

    for line in stack.export_lines(stack.require_running(args.state_dir)):
        print(line)
    return ExitStatus.OK
