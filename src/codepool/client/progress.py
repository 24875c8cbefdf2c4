"""Progress of long transfers (uploads, exports) on stderr: bytes, codes/s and ETA.

Drawn only when stderr is a terminal; on a pipe or a file the same calls print
nothing, so logs and scripts see only the result.
"""

from __future__ import annotations

from types import TracebackType

from rich import filesize
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text


class CodesColumn(ProgressColumn):
    """Codes (or rows) seen so far and their rate: ``1,234,567 codes 310,000/s``."""

    def __init__(self, noun: str) -> None:
        super().__init__()
        self.noun = noun

    def render(self, task: Task) -> Text:
        codes = int(task.fields.get("codes", 0))
        elapsed = task.finished_time if task.finished else task.elapsed
        rate = f" {codes / elapsed:,.0f}/s" if elapsed else ""
        return Text(f"{codes:,} {self.noun}{rate}", style="progress.data.speed")


class BytesColumn(ProgressColumn):
    """Bytes so far, kept in a task field (when the bar itself counts rows)."""

    def render(self, task: Task) -> Text:
        return Text(filesize.decimal(int(task.fields.get("bytes", 0))), style="progress.download")


class Transfer:
    """A progress bar for one transfer: over ``total`` bytes (an upload), or with
    ``rows=True`` over ``total`` rows (an export, whose size in bytes is not known
    beforehand). ``total`` None: unknown, no ETA."""

    def __init__(self, label: str, total: int | None, *, rows: bool = False) -> None:
        self._console = Console(stderr=True)
        self._progress: Progress | None = None
        self._task = TaskID(0)
        self._codes = 0
        self._bytes = 0
        self._rows = rows
        if self._console.is_terminal:
            columns: list[ProgressColumn] = [
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=24),
            ]
            if rows:
                columns += [BytesColumn(), CodesColumn("rows")]
            else:
                columns += [DownloadColumn(), TransferSpeedColumn(), CodesColumn("codes")]
            columns.append(TimeRemainingColumn())
            self._progress = Progress(*columns, console=self._console)
            self._task = self._progress.add_task(label, total=total, codes=0, bytes=0)

    @property
    def shown(self) -> bool:
        return self._progress is not None

    def __enter__(self) -> Transfer:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self, nbytes: int, codes: int) -> None:
        if self._progress is not None:
            self._codes += codes
            self._bytes += nbytes
            self._progress.update(
                self._task,
                advance=codes if self._rows else nbytes,
                codes=self._codes,
                bytes=self._bytes,
            )

    def describe(self, text: str) -> None:
        """A new label, e.g. once the body is sent and the server is storing it."""
        if self._progress is not None:
            self._progress.update(self._task, description=text)
