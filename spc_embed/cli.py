"""The ``spc-embed`` command: run an issuer as a service, make its keys, check its configuration.

    spc-embed keys --signing-key-out jwt-signing-key.pem    # a signing key, a secret, an API key
    spc-embed check --config issuer.toml                    # every problem, each with its fix
    spc-embed db init --config issuer.toml                  # the schema step, at deploy time
    spc-embed db sweep --config issuer.toml                 # housekeeping, periodically (cron)
    spc-embed serve --config issuer.toml --port 8000        # uvicorn

The configuration comes from ``--config FILE`` (TOML, see
:mod:`spc_embed.config_file`), else from ``SPC_CONFIG_FILE``, else from the
``SPC_*`` environment variables (``IssuerConfig.from_env``). Errors are one
line that says what to fix, exit status 1; usage errors exit 2.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import secrets
import shlex
import socket
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp

from .config import IssuerConfig, Merchant
from .config_check import check_configuration, new_signing_key_pem, open_database, sweep_database
from .config_file import default_database_url, load_config_file, read_toml
from .errors import ConfigurationError
from .issuer import Issuer
from .storage import SCHEMA_VERSION
from .storage.store import redacted

PROG = "spc-embed"
# How `serve` hands its configuration to uvicorn's worker processes (and a way
# to point every command at a file without --config).
CONFIG_FILE_VARIABLE = "SPC_CONFIG_FILE"
MOUNT_PATH_VARIABLE = "SPC_MOUNT_PATH"
APP_FACTORY = "spc_embed.cli:create_app"
DEFAULT_SIGNING_KEY_FILE = "jwt-signing-key.pem"


class CommandError(Exception):
    """A problem the user fixes: printed as one line, exit status 1."""


# The app, for uvicorn


def load_config(config_file: str | None) -> IssuerConfig:
    """The configuration from a TOML file, or from the environment when there is none."""
    return load_config_file(config_file) if config_file else IssuerConfig.from_env()


def build_app(issuer: Issuer) -> ASGIApp:
    """The issuer app on its own, or mounted at its mount path with its lifespan run by the outer app."""
    if not issuer.mount_path:
        return issuer.app
    return Starlette(routes=[Mount(issuer.mount_path, app=issuer.app)], lifespan=issuer.lifespan)


def ready_to_serve(app: ASGIApp) -> ASGIApp:
    """What ``serve`` does once the app is built, just before the server starts: ``gc.freeze()``.

    Everything built so far (modules, configuration, templates, catalogs) lives
    as long as the process. Frozen, the garbage collector's full collections
    no longer walk it: each request leaves some cyclic garbage behind (tasks,
    frames, exceptions), and with these objects in the oldest generation every
    full collection took tens of milliseconds and paused the event loop
    (bench/served.py: p99 of initialize 17 ms, frozen 7 ms). This is the
    process's business, so only ``serve`` does it; a host serving the issuer
    in its own app can call this (or ``gc.freeze()``) at the end of its own
    start-up (docs/deployment.md).
    """
    gc.collect()  # what is garbage now is not frozen with the rest
    gc.freeze()
    return app


def create_app() -> ASGIApp:
    """uvicorn's app factory (``spc_embed.cli:create_app``), as ``serve --workers N`` runs it in each worker.

    Reads the configuration file named by ``SPC_CONFIG_FILE`` (else the ``SPC_*``
    variables) and the mount path from ``SPC_MOUNT_PATH``.
    """
    config = load_config(os.environ.get(CONFIG_FILE_VARIABLE) or None)
    return ready_to_serve(build_app(Issuer(config, mount_path=os.environ.get(MOUNT_PATH_VARIABLE, ""))))


# Commands


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    try:
        issuer = Issuer(load_config(args.config), mount_path=args.mount_path)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc} (`spc-embed check` lists every problem)") from exc
    # The schema step before uvicorn starts: a database that cannot be opened is
    # one line here, not a traceback from a worker's lifespan.
    open_database(issuer.config.database_url)
    check_can_listen(args.host, args.port)
    options = {"host": args.host, "port": args.port, "proxy_headers": args.proxy_headers,
               "forwarded_allow_ips": args.forwarded_allow_ips, "log_level": args.log_level,
               "access_log": args.access_log}
    print(f"{PROG}: serving the issuer {issuer.base_url} (configured from {_source(args.config)}) on "
          f"http://{args.host}:{args.port}{args.mount_path} with {args.workers} worker(s)", file=sys.stderr)
    if args.workers > 1:
        # Workers are new processes: they build the app from the same sources.
        os.environ[CONFIG_FILE_VARIABLE] = str(Path(args.config).absolute()) if args.config else ""
        os.environ[MOUNT_PATH_VARIABLE] = args.mount_path
        uvicorn.run(APP_FACTORY, factory=True, workers=args.workers, **options)
    else:
        uvicorn.run(ready_to_serve(build_app(issuer)), **options)
    return 0


def check_can_listen(host: str, port: int) -> None:
    """A port in use (or a host not of this machine) is one line here, not uvicorn's log and exit status 3."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds it
            probe.bind(address)
    except OSError as exc:
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def keys(args: argparse.Namespace) -> int:
    merchant = Merchant(id=args.merchant_id, origins=(args.merchant_origin,))  # validates both
    pem = new_signing_key_pem()
    secret = secrets.token_urlsafe(48)   # 64 characters
    api_key = secrets.token_urlsafe(32)  # 43 characters
    out = sys.stdout
    if args.signing_key_out:
        key_file = write_private_file(Path(args.signing_key_out), pem)
        print(f"# A new EC P-256 signing key (PKCS8 PEM) is in {key_file} (mode 0600).", file=out)
    else:
        key_file = DEFAULT_SIGNING_KEY_FILE
        print(f"# A new EC P-256 signing key (PKCS8 PEM): save it as {key_file}, readable by the service "
              "only (chmod 600), or use --signing-key-out FILE.", file=out)
        print(pem, file=out)
    print("# Keep the secret and the API key out of version control; give the API key to the merchant.", file=out)
    merchant_json = json.dumps([{"id": merchant.id, "origins": list(merchant.origins), "api_keys": [api_key]}])
    if args.format in ("env", "both"):
        print("\n# As environment variables (IssuerConfig.from_env), next to SPC_RP_ID, SPC_RP_NAME, SPC_ORIGIN "
              "and SPC_DATABASE_URL:", file=out)
        print(f"SPC_SECRET_KEYS={shlex.quote(secret)}", file=out)
        print(f"SPC_SIGNING_KEYS_FILE={shlex.quote(key_file)}", file=out)
        print(f"SPC_MERCHANTS={shlex.quote(merchant_json)}", file=out)
    if args.format in ("toml", "both"):
        print("\n# Or in issuer.toml (spc-embed serve --config issuer.toml); set these four and uncomment them:",
              file=out)
        print('# rp_id = "bank.example"\n# rp_name = "Example Bank"\n# origin = "https://bank.example"\n'
              '# database_url = "sqlite:////var/lib/spc-embed/spc.db"', file=out)
        print(f"secret_keys = [{_toml_string(secret)}]   # newest first", file=out)
        print(f"signing_keys_file = {_toml_string(key_file)}", file=out)
        print(f"\n[[merchants]]\nid = {_toml_string(merchant.id)}\n"
              f"origins = [{', '.join(_toml_string(o) for o in merchant.origins)}]\n"
              f"api_keys = [{_toml_string(api_key)}]", file=out)
    return 0


def check(args: argparse.Namespace) -> int:
    report = check_configuration(args.config, mount_path=args.mount_path)
    for problem in report.problems:
        print(problem)
    if report.problems or report.config is None:
        count = len(report.problems)
        print(f"{PROG}: error: {count} problem{'s' if count > 1 else ''} in the configuration from "
              f"{_source(args.config)}; fix {'them' if count > 1 else 'it'} and run `spc-embed check` again",
              file=sys.stderr)
        return 1
    config = report.config
    merchants = ", ".join(f"{m.id} ({' '.join(m.origins)})" for m in config.merchants)
    print(f"{PROG}: the configuration from {_source(args.config)} is valid")
    print(f"  issuer     {config.origin}{args.mount_path} (rp_id {config.rp_id}, {config.rp_name!r})")
    print(f"  merchants  {merchants}")
    print(f"  keys       {len(config.secret_keys)} secret, {len(config.signing_keys)} signing, "
          f"{len(config.admin_api_key_hashes)} admin API")
    print(f"  database   {redacted(report.database)} (schema version {SCHEMA_VERSION}, opened)")
    return 0


def db_init(args: argparse.Namespace) -> int:
    url = args.database_url or _database_url(args.config)
    open_database(url)
    print(f"{PROG}: the database {redacted(url)} is ready (schema version {SCHEMA_VERSION})")
    return 0


def db_sweep(args: argparse.Namespace) -> int:
    url = args.database_url or _database_url(args.config)
    expired, deleted = sweep_database(url)
    print(f"{PROG}: swept {redacted(url)}: {expired} pending transactions past their TTL marked expired, "
          f"{deleted} expired challenges deleted")
    return 0


# Helpers


def write_private_file(path: Path, text: str) -> str:
    """Create ``path`` readable by its owner only; never overwrite (a lost signing key cannot be recovered)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CommandError(f"{path} already exists: choose another file, or remove it if it is not a key "
                           "in use (spc-embed never overwrites a key)") from None
    except OSError as exc:
        raise CommandError(f"cannot create {path}: {exc.strerror}; choose a writable path") from None
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        os.fchmod(fd, 0o600)  # whatever the umask
        fh.write(text)
    return str(path.absolute())


def one_line(message: str) -> str:
    return " ".join(message.split())


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string of printable characters is a TOML basic string


def _source(config_file: str | None) -> str:
    return config_file or "the SPC_* environment variables"


def _database_url(config_file: str | None) -> str:
    """Only the database URL: db init needs the database, not the secrets."""
    if config_file:
        url = read_toml(config_file).get("database_url", default_database_url())
        if not isinstance(url, str):
            raise ConfigurationError(f'{config_file}: database_url must be a string in quotes, got {url!r}')
        return url
    return os.environ.get("SPC_DATABASE_URL", default_database_url())


def _version() -> str:
    try:
        return metadata.version("spc-embed")
    except metadata.PackageNotFoundError:
        return "unknown"


def _port(value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a TCP port (0-65535)")
    return int(value)


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be a whole number, 1 or more")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Secure Payment Confirmation for card issuers: run, configure and check an issuer.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def config_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--config", metavar="FILE", default=os.environ.get(CONFIG_FILE_VARIABLE) or None,
                         help=f"the issuer configuration in TOML (default: ${CONFIG_FILE_VARIABLE}, else the "
                              "SPC_* environment variables)")

    def database_options(sub: argparse.ArgumentParser) -> None:
        # A db step needs only the database: from --database-url, or the configuration.
        config_option(sub)
        sub.add_argument("--database-url", metavar="URL",
                         help="the database (default: database_url of --config, else $SPC_DATABASE_URL, else "
                              f"{default_database_url()})")

    def mount_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--mount-path", metavar="PATH", default=os.environ.get(MOUNT_PATH_VARIABLE, ""),
                         help="serve the issuer under this path, e.g. /spc (default: the root); it is part of "
                              "the issuer's URLs and of the result tokens' iss")

    sub = commands.add_parser("serve", help="run the issuer as a service (uvicorn)",
                              description="Run the issuer as a standalone service with uvicorn.")
    config_option(sub)
    mount_option(sub)
    sub.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    sub.add_argument("--port", type=_port, default=8000, help="port to listen on (default: %(default)s)")
    sub.add_argument("--workers", type=_positive, default=1, help="worker processes (default: %(default)s)")
    sub.add_argument("--proxy-headers", action=argparse.BooleanOptionalAction, default=True,
                     help="trust X-Forwarded-For/-Proto from --forwarded-allow-ips (default: on)")
    sub.add_argument("--forwarded-allow-ips", metavar="IPS", default=None,
                     help="comma-separated proxy addresses to trust, or '*' (default: $FORWARDED_ALLOW_IPS, "
                          "else 127.0.0.1)")
    sub.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    sub.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True,
                     help="log each request (default: on)")
    sub.set_defaults(handler=serve)

    sub = commands.add_parser("keys", help="print a new signing key, secret and API key",
                              description="Print a new EC P-256 signing key, a secret and a merchant API key, "
                                          "as environment variables and as TOML.")
    sub.add_argument("--signing-key-out", metavar="FILE",
                     help="write the signing key to FILE (mode 0600, never overwritten) instead of printing it")
    sub.add_argument("--merchant-id", default="shop", help="the merchant the API key is for (default: %(default)s)")
    sub.add_argument("--merchant-origin", default="https://shop.example",
                     help="that merchant's checkout origin (default: %(default)s)")
    sub.add_argument("--format", choices=["both", "env", "toml"], default="both",
                     help="print the configuration as environment variables, TOML or both (default: both)")
    sub.set_defaults(handler=keys)

    sub = commands.add_parser("check", help="report every configuration problem, each with its fix",
                              description="Load the configuration, open the database and report every "
                                          "problem found, one per line; exit status 1 if there is any.")
    config_option(sub)
    mount_option(sub)
    sub.set_defaults(handler=check)

    db = commands.add_parser("db", help="database steps", description="Database steps.")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="STEP")
    sub = db_commands.add_parser("init", help="create or check the schema (at deploy time)",
                                 description="Create the schema, or check that it is the one this spc-embed "
                                             "knows. Idempotent; safe while other instances run.")
    database_options(sub)
    sub.set_defaults(handler=db_init)
    sub = db_commands.add_parser("sweep", help="housekeeping to run periodically (cron)",
                                 description="Mark pending transactions past their TTL expired (reads already "
                                             "treat them so) and delete expired challenges. Safe while instances "
                                             "run; run it as often as you like, e.g. hourly.")
    database_options(sub)
    sub.set_defaults(handler=db_sweep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (ConfigurationError, CommandError, OSError) as exc:
        print(f"{PROG}: error: {one_line(str(exc))}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
