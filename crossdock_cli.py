"""The ``crossdock`` command: one entry point, one group per part (DESIGN §8).

This module only wires the groups together and turns crossdock's own errors into a one-line
message and exit 1 (2 for bad usage, as click does). Each part keeps its commands beside it:
``gateway/cli/`` (gateway), ``gateway/dispatch.py`` (dispatch), ``agent/cli.py`` (agent),
``ui/cli.py`` (tablet).
A traceback is printed only with ``--debug``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from sync.errors import CrossdockError

NOT_BUILT = 2


class _Root(click.Group):
    """The root group. A part's group is imported when it is used (``get_command``), not at
    start: ``crossdock agent state`` loads the agent, not the gateway, its ingest and its
    broker code (1.2 s of CPU for every command before, most of it the gateway's imports; on a
    loaded 2-core box that was 6-9 s of wall time per call, which the demo's polling of its
    tablets paid every time)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for _module, _attr, name, _why in _PARTS]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = self.commands.get(cmd_name)
        if found is not None:
            return found
        for module, attr, name, why in _PARTS:
            if name == cmd_name:
                command = _optional(module, attr)
                command = command if command is not None else _not_built(name, why)
                self.commands[name] = command
                return command
        return None

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # --debug is accepted after any subcommand too (`crossdock gateway run ... --debug`):
        # it is the root's option, moved in front (not past a `--`)
        end = args.index("--") if "--" in args else len(args)
        if "--debug" in args[:end]:
            args = ["--debug", *(a for i, a in enumerate(args) if i >= end or a != "--debug")]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # `crossdock ... | head`: the reader has what it wanted; leave quietly (stdout is
            # pointed at /dev/null so the interpreter's last flush does not complain)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(1)
        except CrossdockError as exc:
            if ctx.meta.get("crossdock.debug"):
                raise
            click.echo(f"crossdock: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("crossdock: interrupted", err=True)
            ctx.exit(130)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # a bug: still one line for the operator, unless --debug
            if ctx.meta.get("crossdock.debug"):
                raise
            click.echo(
                f"crossdock: internal error: {type(exc).__name__}: {exc} "
                "(run with --debug for the traceback)",
                err=True,
            )
            ctx.exit(1)


@click.group(cls=_Root)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="crossdock")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """crossdock: legacy exports, dispatch and tablets, with conflicts shown, not hidden."""
    ctx.meta["crossdock.debug"] = debug
    import logging

    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _not_built(name: str, issue: str) -> click.Command:
    @click.command(
        name=name,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        help=f"Not built yet ({issue}).",
    )
    def command() -> None:
        click.echo(f"crossdock {name}: not built yet ({issue})", err=True)
        sys.exit(NOT_BUILT)

    return command


def _optional(module: str, attr: str) -> click.Command | None:
    """A part's command group, or None when that part is not built (its module is missing).

    Only the part's own module being absent counts; any other import error is a bug and raises.
    """
    import importlib

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise
    command: click.Command = getattr(mod, attr)
    return command


_PARTS = (
    ("gateway.cli", "gateway", "gateway", "the gateway is not built yet"),
    ("gateway.dispatch", "dispatch", "dispatch", "dispatch is not built yet"),
    ("agent.cli", "agent", "agent", "the tablet agent is not built yet"),
    ("ui.cli", "tablet", "tablet", "the Kivy tablet UI is not built yet"),
    ("gateway.demo", "demo", "demo", "the end-to-end demo is not built yet"),
    ("gateway.board.cli", "board", "board", "the dispatch board is not built yet"),
)


def main() -> None:
    cli(prog_name="crossdock")


if __name__ == "__main__":
    main()
