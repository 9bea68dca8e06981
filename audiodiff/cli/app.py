"""The Typer app every command module registers on, stderr for every message, and the
console script's entry point `main`: user errors become one line and exit code 2."""
from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from audiodiff.errors import AudiodiffError

CONTEXT = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, context_settings=CONTEXT,
                  help="Diffusion models of raw audio: train a DiffWave vocoder or generator, "
                       "vocode mels, sample sound.")
err = Console(stderr=True)


def note(text: str) -> None:
    """A one-line note on stderr (under torchrun, from rank 0 only)."""
    from audiodiff.training.distributed import is_main_process

    if is_main_process():
        err.print(f"note: {text}", highlight=False, markup=False, soft_wrap=True)



def say(line: str) -> None:
    """A line on stderr as the library wrote it: the "Model: ..." line a command that
    loads a model prints first (model_info.model_line), a library's log line."""
    err.print(line, highlight=False, markup=False, soft_wrap=True)



def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("steps"), TimeElapsedColumn(), console=err)




def _print_version(value: bool) -> None:
    """Eager --version: print `audiodiff X.Y.Z` and exit 0 before any command runs."""
    if value:
        from audiodiff import __version__

        typer.echo(f"audiodiff {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Diffusion models of raw audio: train a DiffWave vocoder or generator, vocode mels, sample sound."""



# typer >= 0.2x vendors click (typer._click), older typer uses click itself: find the
# base of usage errors by name rather than import either
_CLICK_EXCEPTION = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def main() -> None:
    """Console-script entry point: run the app, turning user errors (an AudiodiffError, or
    a bad option or argument) into one line + exit 2."""
    try:
        code = app(prog_name="audiodiff", standalone_mode=False)
    except AudiodiffError as exc:
        _error(str(exc))
    except _CLICK_EXCEPTION as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a group without a command: its help is printed
            sys.exit(exc.exit_code)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} -h`)" if ctx is not None and exc.exit_code == 2 else ""
        _error(f"{exc.format_message()}{hint}", exc.exit_code)
    except typer.Abort:
        err.print("Aborted.")
        sys.exit(130)
    if isinstance(code, int) and code:
        sys.exit(code)


def _error(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/] {escape(' '.join(message.split()))}", highlight=False, soft_wrap=True)
    sys.exit(code)
