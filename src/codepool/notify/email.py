"""Email attempts: a plain-text alert over SMTP (aiosmtplib)."""

from __future__ import annotations

import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
import msgspec

from codepool.models import WebhookEvent
from codepool.notify.outcome import DELIVERED, Outcome

_SCHEMES = {"smtp": (False, 25), "smtps": (True, 465)}
_STARTTLS = {"1": True, "true": True, "0": False, "false": False}


class SmtpServer(msgspec.Struct, frozen=True, kw_only=True):
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    use_tls: bool = False  # smtps://: TLS from the first byte
    start_tls: bool | None = None  # None: upgrade when the server offers it


def parse_smtp_url(url: str) -> SmtpServer:
    """``smtp://user:pass@host:port`` (``smtps://`` for implicit TLS; ``?starttls=1``
    requires STARTTLS, ``?starttls=0`` never uses it, absent: when offered)."""
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise ValueError("expected smtp://[user:password@]host[:port] or smtps://...")
    use_tls, default_port = _SCHEMES[parts.scheme]
    try:
        port = parts.port or default_port
    except ValueError as exc:  # a port that is not a number
        raise ValueError(f"bad port: {exc}") from None
    start_tls: bool | None = None
    flag = parse_qs(parts.query).get("starttls")
    if flag:
        if flag[-1].lower() not in _STARTTLS:
            raise ValueError("starttls must be 1 or 0")
        start_tls = _STARTTLS[flag[-1].lower()]
    return SmtpServer(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        use_tls=use_tls,
        start_tls=False if use_tls else start_tls,
    )


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def compose(event: WebhookEvent, project_name: str, to: list[str], sender: str) -> EmailMessage:
    """The alert: who (project, pool), what (available, threshold), when."""
    name = event.pool_name or event.pool_id or "?"
    pool = f"{name} ({event.pool_id})"
    project = f"{project_name} ({event.project_id})"
    if event.type == "POOL_EXHAUSTED":
        subject = f"[codepool] {project_name}: pool {name} is exhausted"
        summary = f"Pool {pool} in project {project} has no codes left."
    elif event.type == "POOL_LOW":
        subject = f"[codepool] {project_name}: pool {name} is low ({event.available} left)"
        summary = (
            f"Pool {pool} in project {project} has {event.available} codes left, "
            f"at or below its low-stock threshold of {event.threshold}."
        )
    elif event.type == "POOL_EMPTY_SOON":
        when = "?" if event.empty_at is None else _utc(event.empty_at)
        subject = f"[codepool] {project_name}: pool {name} runs dry by {when}"
        summary = (
            f"Pool {pool} in project {project} has {event.available} codes left and hands "
            f"out {event.rate_per_minute} a minute: at that rate it is empty by {when}, "
            f"within its alert of {event.threshold_seconds} seconds."
        )
    else:
        subject = f"[codepool] {project_name}: {event.type}"
        summary = f"Event {event.type} in project {project}."
    lines = [
        summary,
        "",
        f"Project:    {project}",
        f"Pool:       {pool}",
        f"Available:  {event.available}",
    ]
    if event.threshold is not None:
        lines.append(f"Threshold:  {event.threshold}")
    lines += [
        f"Event:      {event.type} {event.id}",
        f"Time:       {_utc(event.time)}",
        "",
        "Uploading codes to the pool refills it; the alert fires again the next time",
        "the stock falls to a threshold.",
    ]
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = formatdate(event.time, usegmt=True)
    message["Message-ID"] = make_msgid(domain="codepool")
    message["X-Codepool-Event-Id"] = event.id
    message.set_content("\n".join(lines) + "\n")
    return message


async def send(server: SmtpServer, message: EmailMessage, time_limit: float) -> Outcome:
    """One SMTP conversation; any failure (refused, timeout, rejected) is worth a retry."""
    try:
        await aiosmtplib.send(
            message,
            hostname=server.host,
            port=server.port,
            username=server.username,
            password=server.password,
            use_tls=server.use_tls,
            start_tls=server.start_tls,
            timeout=time_limit,
        )
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return Outcome(ok=False, error=f"SMTP: {type(exc).__name__}: {exc}")
    return DELIVERED
