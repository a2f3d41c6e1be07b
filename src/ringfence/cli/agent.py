"""``ringfence agent``: the process that runs on (or for) one asset, pulls directives and reports back.

Every ``--interval`` the agent sends a heartbeat (its health: the ``--health`` command's exit status, or ok
without one) with any install or rollback results not yet delivered. It asks for its directive when the
last answer's ``retry_after`` has passed (never more often than the interval, never less often than
``--max-wait``), and then:

- **install** → runs ``--apply`` through the shell, once per rollout, and reports how it ended;
- **rollback** → runs ``--rollback`` the same way (also when this agent never installed: a rollback
  command must be safe to run on an asset that was not updated, as a reinstall of the old version is);
- **wait** → nothing; the reason is logged when it changes.

The commands get ``RINGFENCE_ASSET``, ``RINGFENCE_ROLLOUT``, ``RINGFENCE_PRODUCT``, ``RINGFENCE_VERSION``,
``RINGFENCE_RING`` and ``RINGFENCE_ACTION`` in their environment. A command runs to its end (or to
``--command-timeout``, when its process group is killed and it counts as failed): an install is never
cut in half, not even by SIGTERM, which makes the agent stop after the command under way, deliver what it
owes and exit 0. The server going away (a restart, a network fault, a 5xx) is waited out with
exponential backoff (1 s doubling to 60 s, with jitter). A token the server refuses (401/403) is fatal:
exit status 2. With ``--state FILE`` the agent remembers across restarts which operations it has done
and which results it still owes; without it, a restarted agent may run an install again (install
commands, like Ansible tasks, must be idempotent).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from ringfence.cli.main import app
from ringfence.core.clock import utc_now
from ringfence.core.words import count

BACKOFF_START = 1.0
BACKOFF_MAX = 60.0
OUTPUT_TAIL = 500
"""Characters of a command's output kept in a report."""


class ServerUnavailableError(Exception):
    """The server did not answer usefully this time (down, restarting, 5xx): try again later."""


class TokenRefusedError(Exception):
    """The server refused the token (401/403): retrying will not help."""


class ReportRejectedError(Exception):
    """The server refused what was sent as invalid (4xx other than 401/403): sending it again will not help."""


@dataclass(frozen=True)
class CommandOutcome:
    succeeded: bool
    detail: str


def run_command(command: str, *, env: dict[str, str], timeout: float) -> CommandOutcome:
    """Run ``command`` through the shell in its own process group; kill the group after ``timeout``."""
    process = subprocess.Popen(
        command,
        shell=True,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        # Its own session: a Ctrl-C or SIGTERM meant for the agent does not cut an install in half.
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return CommandOutcome(False, f"did not finish within {timeout:.0f} s and was killed; {_tail(output)}".strip())
    if process.returncode == 0:
        return CommandOutcome(True, _tail(output))
    return CommandOutcome(False, f"exit status {process.returncode}: {_tail(output)}".strip().rstrip(":"))


def _tail(output: str | None) -> str:
    text = (output or "").strip()
    return text if len(text) <= OUTPUT_TAIL else "…" + text[-OUTPUT_TAIL:]


@dataclass
class AgentMemory:
    """What the agent has done and what it still owes the server; kept in ``path`` when given."""

    path: Path | None = None
    done: dict[str, list[str]] = field(default_factory=dict)
    """Rollout id → operations run for it (install, rollback)."""
    owed: list[dict[str, Any]] = field(default_factory=list)
    """Results not yet accepted by the server: {rollout, operation, status, detail}."""
    current_rollout: str | None = None

    @classmethod
    def load(cls, path: Path | None) -> AgentMemory:
        if path is None or not path.exists():
            return cls(path)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            from ringfence.core.errors import InputError, Problem

            raise InputError([Problem(f"is not an agent state file ({exc})", source=str(path))]) from None
        return cls(
            path,
            {str(k): [str(op) for op in v] for k, v in dict(document.get("done", {})).items()},
            [dict(item) for item in document.get("owed", [])],
            document.get("current_rollout"),
        )

    def has_done(self, rollout: str, operation: str) -> bool:
        return operation in self.done.get(rollout, [])

    def record(self, rollout: str, operation: str, outcome: CommandOutcome) -> None:
        self.done.setdefault(rollout, []).append(operation)
        self.owed.append(
            {
                "rollout": rollout,
                "operation": operation,
                "status": "succeeded" if outcome.succeeded else "failed",
                "detail": outcome.detail,
            }
        )
        self.current_rollout = rollout
        self.save()

    def delivered(self, count: int) -> None:
        del self.owed[:count]
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        from ringfence.cli.paths import writing
        from ringfence.files.disk import write_text_atomic

        document = {"done": self.done, "owed": self.owed, "current_rollout": self.current_rollout}
        with writing(self.path, "--state"):
            write_text_atomic(self.path, json.dumps(document, sort_keys=True))


@dataclass
class Agent:
    """The pull loop of one asset. ``client`` is an ``httpx.Client`` whose base URL is the server."""

    client: Any
    asset: str
    apply_command: str
    rollback_command: str
    health_command: str | None
    interval: float
    max_wait: float
    command_timeout: float
    health_timeout: float
    memory: AgentMemory
    stop: threading.Event = field(default_factory=threading.Event)
    _next_directive: float = field(default=0.0, init=False)
    _last_reason: str | None = field(default=None, init=False)
    _backoff: float = field(default=0.0, init=False)

    def run(self) -> None:
        """Loop until ``stop`` is set; raises TokenRefusedError when the server refuses the token."""
        self.say(f"agent for {self.asset} polling {self.client.base_url} every {self.interval:g} s")
        while not self.stop.is_set():
            try:
                if time.monotonic() >= self._next_directive:
                    self.follow(self.fetch_directive())
                self.send_heartbeat()
                if self._backoff:
                    self.say("server reachable again")
                self._backoff = 0.0
                pause = self.interval
            except ServerUnavailableError as exc:
                self._backoff = min(BACKOFF_MAX, self._backoff * 2 if self._backoff else BACKOFF_START)
                pause = self._backoff * random.uniform(0.8, 1.2)
                self.say(f"server unavailable ({exc}); trying again in {pause:.1f} s")
            except ReportRejectedError as exc:
                self.say(f"the server refused a request: {exc}")
                pause = self.interval
            self.stop.wait(pause)
        if self.memory.owed:
            try:
                self.send_heartbeat()
            except ServerUnavailableError as exc:
                self.say(f"stopping with {count(len(self.memory.owed), 'result')} undelivered ({exc})")
        self.say("stopped")

    # ------------------------------------------------------------------------------ directives

    def fetch_directive(self) -> dict[str, Any]:
        found = self._request("GET", f"/v1/agents/{self.asset}/directive")
        retry = found.get("retry_after")
        wait = float(retry) if isinstance(retry, int | float) and retry > 0 else self.interval
        self._next_directive = time.monotonic() + min(self.max_wait, max(self.interval, wait))
        return found

    def follow(self, directive: dict[str, Any]) -> None:
        action = directive.get("action")
        rollout = str(directive.get("rollout") or "")
        reason = str(directive.get("reason") or "")
        if action not in ("install", "rollback") or not rollout:
            if reason != self._last_reason:
                self.say(f"waiting: {reason}")
                self._last_reason = reason
            return
        self._last_reason = None
        if self.memory.has_done(rollout, action):
            return  # done already; the server has not taken our result into account yet
        release = f"{directive.get('product', '?')} {directive.get('version', '?')}"
        command = self.apply_command if action == "install" else self.rollback_command
        self.say(f"{action} {release} (rollout {rollout}, ring {directive.get('ring')}): {reason}")
        env = dict(os.environ)
        env.update(
            {
                "RINGFENCE_ASSET": self.asset,
                "RINGFENCE_ROLLOUT": rollout,
                "RINGFENCE_PRODUCT": str(directive.get("product") or ""),
                "RINGFENCE_VERSION": str(directive.get("version") or ""),
                "RINGFENCE_RING": str(directive.get("ring") if directive.get("ring") is not None else ""),
                "RINGFENCE_ACTION": action,
            }
        )
        outcome = run_command(command, env=env, timeout=self.command_timeout)
        verdict = "succeeded" if outcome.succeeded else "failed"
        self.say(f"{action} of {release} {verdict}" + (f": {outcome.detail}" if outcome.detail else ""))
        self.memory.record(rollout, action, outcome)

    # ------------------------------------------------------------------------------ heartbeats

    def health(self) -> tuple[str, str | None]:
        if not self.health_command:
            return "ok", None
        env = dict(os.environ, RINGFENCE_ASSET=self.asset)
        outcome = run_command(self.health_command, env=env, timeout=self.health_timeout)
        return ("ok", None) if outcome.succeeded else ("failed", outcome.detail or "health check failed")

    def send_heartbeat(self) -> None:
        status, detail = self.health()
        at = utc_now().isoformat()
        beat: dict[str, Any] = {"asset": self.asset, "at": at, "status": status}
        if status == "failed":
            beat["signal"] = "service_check_failed"
            beat["detail"] = detail
        owed = list(self.memory.owed)
        items = []
        for result in owed:
            item = dict(beat, rollout=result["rollout"])
            item["result"] = {k: result[k] for k in ("operation", "status", "detail")}
            items.append(item)
        if not items:
            items = [dict(beat, rollout=self.memory.current_rollout) if self.memory.current_rollout else beat]
        try:
            self._request("POST", "/v1/heartbeats", json=items)
        except ReportRejectedError as exc:
            # Sending it again would be refused again: drop it rather than block every later heartbeat.
            self.say(f"the server refused a report and it is dropped: {exc}")
            if owed:
                self.memory.delivered(len(owed))
            return
        if owed:
            self.memory.delivered(len(owed))

    # ------------------------------------------------------------------------------ HTTP

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        import httpx

        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnavailableError(f"{type(exc).__name__}: {exc}") from None
        if response.status_code in (401, 403):
            raise TokenRefusedError(f"{response.status_code} from {path}: {_problem(response)}")
        if response.status_code >= 500 or response.status_code == 429:
            raise ServerUnavailableError(f"{response.status_code} from {path}")
        if response.status_code >= 400:
            raise ReportRejectedError(f"{response.status_code} from {path}: {_problem(response)}")
        try:
            body = response.json()
        except ValueError:
            raise ServerUnavailableError(f"{path} answered with something that is not JSON") from None
        return body if isinstance(body, dict) else {}

    def say(self, message: str) -> None:
        stamp = utc_now().strftime("%H:%M:%S")
        sys.stderr.write(f"{stamp} {self.asset}: {message}\n")
        sys.stderr.flush()


def _problem(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return str(response.text)[:200]
    return str(body.get("detail") or body) if isinstance(body, dict) else str(body)


def _seconds(option: str, value: str) -> float:
    from ringfence.core.durations import parse_duration
    from ringfence.core.errors import InputError, Problem

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise InputError([Problem(str(exc), path=(option,))]) from None
    if seconds <= 0:
        raise InputError([Problem(f"'{value}' must be longer than zero", path=(option,))])
    return float(seconds)


def server_url(server: str) -> str:
    """The server's base URL, or an InputError naming the fix.

    Without a scheme (``localhost:8531``) httpx cannot connect and the agent would retry for ever, as if the
    server were down: a mistake in the command line must fail at once instead.
    """
    import httpx

    from ringfence.core.errors import InputError, Problem

    text = server.strip()
    scheme, sep, rest = text.partition("://")
    text, rest = text.rstrip("/"), rest.rstrip("/")
    if not sep:
        raise InputError(
            [Problem(f"'{server}' has no scheme; write --server http://{text} (or https://)", path=("--server",))]
        )
    if scheme.lower() not in ("http", "https"):
        raise InputError(
            [Problem(f"'{server}' is not an http:// or https:// URL; write --server http://{rest}", path=("--server",))]
        )
    try:
        host = httpx.URL(text).host
    except httpx.InvalidURL as exc:
        raise InputError([Problem(f"'{server}' is not a URL ({exc})", path=("--server",))]) from None
    if not host or not rest:
        raise InputError(
            [Problem(f"'{server}' names no host, e.g. --server http://localhost:8321", path=("--server",))]
        )
    return text


@app.command("agent", rich_help_panel="Run the service")
def agent(
    server: Annotated[str, typer.Option(help="The ringfence server, e.g. http://ringfence.trust.nhs.uk:8321.")],
    asset: Annotated[str, typer.Option(help="The asset this agent speaks for.")],
    apply: Annotated[str, typer.Option("--apply", help="Shell command that installs the update.")],
    rollback: Annotated[str, typer.Option("--rollback", help="Shell command that rolls it back.")],
    token: Annotated[
        str, typer.Option(envvar="RINGFENCE_AGENT_TOKEN", help="The asset's agent token (or an operator's).")
    ],
    interval: Annotated[str, typer.Option(help="Time between heartbeats (and at most between directives).")] = "5s",
    health: Annotated[
        str | None, typer.Option(help="Shell command whose exit status is the asset's health (0 healthy).")
    ] = None,
    max_wait: Annotated[str, typer.Option(help="Longest wait between directives, whatever the server hints.")] = "1m",
    command_timeout: Annotated[str, typer.Option(help="How long --apply or --rollback may run.")] = "30m",
    health_timeout: Annotated[str, typer.Option(help="How long --health may run.")] = "30s",
    state: Annotated[
        Path | None, typer.Option(help="File remembering operations done and results owed across restarts.")
    ] = None,
) -> None:
    """Run the agent of one asset: poll its directive, install or roll back when told, report, heartbeat."""
    import httpx

    from ringfence.cli.paths import check_output_file
    from ringfence.core.errors import PermissionDeniedError

    base_url = server_url(server)
    check_output_file(state, "--state", example="agent-state.json")
    memory = AgentMemory.load(state)
    client = httpx.Client(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}", "User-Agent": "ringfence-agent"},
        timeout=httpx.Timeout(10.0, connect=5.0),
    )
    loop = Agent(
        client=client,
        asset=asset,
        apply_command=apply,
        rollback_command=rollback,
        health_command=health,
        interval=_seconds("--interval", interval),
        max_wait=_seconds("--max-wait", max_wait),
        command_timeout=_seconds("--command-timeout", command_timeout),
        health_timeout=_seconds("--health-timeout", health_timeout),
        memory=memory,
    )

    def stop(signum: int, _frame: FrameType | None) -> None:
        loop.say(f"{signal.Signals(signum).name} received: stopping after the step under way")
        loop.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        loop.run()
    except TokenRefusedError as exc:
        raise PermissionDeniedError(f"the server refused the agent's token: {exc}") from None
    finally:
        client.close()
