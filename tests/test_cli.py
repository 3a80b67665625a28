"""The spc-embed command: keys, check (every problem, each with its fix), db init, db sweep, serve.

Commands run in process through ``main(argv)`` where that is enough, and as
real processes where the process is the point (``serve``, ``python -m``).
"""

from __future__ import annotations

import gc
import json
import os
import re
import shlex
import socket
import sqlite3
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from factories import API_KEY, SECRET
from processes import free_port, stop, wait_until_serving
from starlette.testclient import TestClient

from spc_embed import IssuerConfig, cli
from spc_embed.config_file import load_config_file

ROOT = Path(__file__).resolve().parent.parent
ENV_NAMES = ("RP_ID", "RP_NAME", "ORIGIN", "SECRET_KEYS", "MERCHANTS", "SIGNING_KEYS_FILE", "DATABASE_URL",
             "ADMIN_API_KEYS", "ATTESTATION_FORMATS", "ENROLLMENT_TTL", "CHALLENGE_TTL", "TRANSACTION_TTL",
             "RESULT_TOKEN_TTL", "MAX_BODY_BYTES", "CONFIG_FILE", "MOUNT_PATH")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SPC_* variable from the caller's environment, and a scratch working directory."""
    for name in ENV_NAMES:
        monkeypatch.delenv("SPC_" + name, raising=False)
    monkeypatch.chdir(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status = cli.main(list(argv))
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def write_key(path: Path, key: ec.EllipticCurvePrivateKey | None = None) -> Path:
    key = key or ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def toml_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def write_toml(path: Path, top: dict[str, Any], merchants: list[dict[str, Any]]) -> Path:
    lines = [f"{key} = {toml_value(value)}" for key, value in top.items()]
    for merchant in merchants:
        lines += ["", "[[merchants]]", *(f"{k} = {toml_value(v)}" for k, v in merchant.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def good_settings(tmp_path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    write_key(tmp_path / "signing-key.pem")
    top = {
        "rp_id": "bank.example", "rp_name": "Example Bank", "origin": "https://bank.example",
        "secret_keys": [SECRET], "signing_keys_file": "signing-key.pem",
        "database_url": f"sqlite:///{tmp_path / 'spc.db'}",
    }
    merchants = [{"id": "shop", "name": "Shop", "origins": ["https://shop.example"], "api_keys": [API_KEY]}]
    return top, merchants


# keys


def test_keys_writes_a_private_p256_key_and_prints_the_configuration_in_both_forms(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "keys", "--signing-key-out", "jwt.pem",
                           "--merchant-id", "acme", "--merchant-origin", "https://acme.example")
    assert (status, err) == (0, "")

    key_file = tmp_path / "jwt.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    pem = key_file.read_text()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS8
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
    assert "PRIVATE KEY" not in out  # written to the file, not printed

    env_lines = [line for line in out.splitlines() if line.startswith("SPC_")]
    env = dict(shlex.split(line)[0].split("=", 1) for line in env_lines)
    assert env["SPC_SIGNING_KEYS_FILE"] == str(key_file)
    (secret,) = env["SPC_SECRET_KEYS"].split(",")
    assert len(secret) >= 48
    (merchant,) = json.loads(env["SPC_MERCHANTS"])
    assert merchant["id"] == "acme" and merchant["origins"] == ["https://acme.example"]
    assert len(merchant["api_keys"][0]) >= 32

    # The environment form is what IssuerConfig.from_env takes...
    config = IssuerConfig.from_env({**env, "SPC_RP_ID": "bank.example", "SPC_RP_NAME": "Bank",
                                    "SPC_ORIGIN": "https://bank.example"})
    assert config.secret_keys == (secret,) and config.signing_keys == (pem,)
    # ...and the TOML form, with the four identity lines uncommented, is what --config takes.
    toml_text = out.split("# Or in issuer.toml", 1)[1].split("\n", 1)[1]
    toml_text = "\n".join(line.removeprefix("# ") if line.startswith(("# rp_", "# origin", "# database_url"))
                          else line for line in toml_text.splitlines())
    (tmp_path / "issuer.toml").write_text(toml_text)
    from_file = load_config_file(tmp_path / "issuer.toml")
    assert from_file.secret_keys == (secret,) and from_file.signing_keys == (pem,)
    assert from_file.merchants[0].api_key_hashes == config.merchants[0].api_key_hashes
    assert tomllib.loads(toml_text)["merchants"][0]["api_keys"] == merchant["api_keys"]


def test_keys_are_new_each_time_and_printed_without_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    def generated(out: str) -> tuple[str, str, str]:
        env = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("SPC_"))
        pem = out[out.index("-----BEGIN PRIVATE KEY-----"):out.index("-----END PRIVATE KEY-----")]
        return pem, env["SPC_SECRET_KEYS"], env["SPC_MERCHANTS"]

    _, first, _ = run(capsys, "keys", "--format", "env")
    _, second, _ = run(capsys, "keys", "--format", "env")
    assert "SPC_SIGNING_KEYS_FILE=jwt-signing-key.pem" in first  # the file name the printed key is to be saved as
    assert "[[merchants]]" not in first  # --format env only
    for a, b in zip(generated(first), generated(second), strict=True):
        assert a != b


def test_keys_never_overwrite_a_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "jwt.pem").write_text("the key in use")
    status, out, err = run(capsys, "keys", "--signing-key-out", "jwt.pem")
    assert status == 1 and out == ""
    assert err.startswith("spc-embed: error: jwt.pem already exists: choose another file") and err.count("\n") == 1
    assert (tmp_path / "jwt.pem").read_text() == "the key in use"


def test_keys_refuse_an_invalid_merchant_origin(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "keys", "--merchant-origin", "https://shop.example/checkout")
    assert status == 1 and out == ""
    assert err == ("spc-embed: error: merchant 'shop' origin 'https://shop.example/checkout' must not have a path, "
                   "query or user part\n")


# check


def test_check_a_valid_configuration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    top, merchants = good_settings(tmp_path)
    write_toml(tmp_path / "issuer.toml", top, merchants)
    status, out, err = run(capsys, "check", "--config", "issuer.toml", "--mount-path", "/spc")
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "spc-embed: the configuration from issuer.toml is valid",
        "  issuer     https://bank.example/spc (rp_id bank.example, 'Example Bank')",
        "  merchants  shop (https://shop.example)",
        "  keys       1 secret, 1 signing, 0 admin API",
        f"  database   sqlite:///{tmp_path / 'spc.db'} (schema version 2, opened)",
    ]


def _p384_key(tmp_path: Path) -> dict[str, Any]:
    write_key(tmp_path / "p384.pem", ec.generate_private_key(ec.SECP384R1()))
    return {"signing_keys_file": "p384.pem"}


def _not_a_directory(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "a-file").write_text("")
    return {"database_url": f"sqlite:///{tmp_path / 'a-file' / 'spc.db'}"}


# One misconfiguration at a time: (what changes, the start of the one line that must name it and its fix).
MISCONFIGURATIONS: dict[str, tuple[Any, str]] = {
    "missing rp_id": ({"rp_id": None}, 'rp_id is missing: add the issuer\'s domain, e.g. rp_id = "bank.example"'),
    "origin not https": ({"origin": "http://bank.example"},
                         "issuer origin 'http://bank.example' must use https (http only for localhost)"),
    "rp_id not matching origin": ({"rp_id": "other.example"},
                                  "rp_id 'other.example' must equal or be a parent domain of the issuer origin host"),
    "secret too short": ({"secret_keys": [SECRET, "too-short-a-secret"]},
                         "secret_keys: secret key #2 must be at least 32 characters long; generate a real one with"),
    "placeholder secret": ({"secret_keys": ["<48 random characters, newest first>"]},
                           "secret_keys: secret key #1 looks like a documentation placeholder"),
    "missing signing key file": ({"signing_keys_file": "nowhere.pem"},
                                 ("cannot read signing_keys_file 'nowhere.pem': No such file or directory; "
                                 "write a new key there with `spc-embed keys --signing-key-out nowhere.pem`")),
    "key not P-256": (_p384_key, ("signing_keys_file: signing keys must be EC P-256 (for ES256), got secp384r1; "
                                 "`spc-embed keys --signing-key-out FILE` writes a new P-256 key")),
    "merchant origin invalid": ({"merchants": [{"id": "shop", "origins": ["shop.example"]}]},
                                "merchants: merchant 'shop' origin 'shop.example' must look like https://host[:port]"),
    "merchant default currency invalid": ({"merchants": [{"id": "shop", "origins": ["https://shop.example"],
                                                          "default_currency": "eur"}]},
                                          ("merchants: merchant 'shop' default_currency 'eur' must be an upper-case "
                                           'ISO 4217 code such as "EUR"')),
    "duplicate merchant ids": ({"merchants": [{"id": "shop", "origins": ["https://a.example"]},
                                              {"id": "shop", "origins": ["https://b.example"]}]},
                               "merchants: merchant ids must be unique, got ['shop', 'shop']"),
    "no merchant": ({"merchants": []}, ("merchants is missing: add a [[merchants]] table with id, origins and "
                                       "api_keys; `spc-embed keys` prints one")),
    "bad database URL": ({"database_url": "mysql://db.example/spc"},
                         "database_url 'mysql://db.example/spc' must be a sqlite:/// or postgresql:// URL"),
    "unwritable SQLite directory": (_not_a_directory, "database_url: cannot open the database SQLite file"),
    "unreachable PostgreSQL": ({"database_url": "postgresql://spc:pw@127.0.0.1:{port}/spc"},
                               "database_url: cannot open the database postgresql://spc:***@127.0.0.1:"),
    "TTL as a string": ({"enrollment_ttl": "900"},
                        "enrollment_ttl must be a whole number without quotes (enrollment_ttl = 900), got '900'"),
    "misspelt key": ({"databse_url": "sqlite:///x.db"},
                     "unknown key 'databse_url': remove it (did you mean 'database_url'?)"),
}


def apply(tmp_path: Path, change: Any) -> Path:
    top, merchants = good_settings(tmp_path)
    changes = change(tmp_path) if callable(change) else dict(change)
    if "merchants" in changes:
        merchants = changes.pop("merchants")
    for key, value in changes.items():
        if value is None:
            top.pop(key)
        else:
            top[key] = value.format(port=free_port()) if isinstance(value, str) else value
    return write_toml(tmp_path / "issuer.toml", top, merchants)


@pytest.mark.parametrize("name", MISCONFIGURATIONS)
def test_check_names_each_misconfiguration_on_one_line_with_its_fix(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    change, expected = MISCONFIGURATIONS[name]
    apply(tmp_path, change)
    status, out, err = run(capsys, "check", "--config", "issuer.toml")
    assert status == 1
    (line,) = out.splitlines()
    assert line.startswith("issuer.toml: " + expected.replace("{tmp}", str(tmp_path))), line
    assert err == ("spc-embed: error: 1 problem in the configuration from issuer.toml; fix it and run "
                   "`spc-embed check` again\n")
    assert "Traceback" not in out + err


def test_check_reports_every_problem_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Not only the first: all of these in one file, each on its own line."""
    write_key(tmp_path / "p384.pem", ec.generate_private_key(ec.SECP384R1()))
    (tmp_path / "a-file").write_text("")
    write_toml(tmp_path / "issuer.toml", {
        "rp_name": "Example Bank", "origin": "http://bank.example",
        "secret_keys": ["too-short-a-secret", SECRET, "<48 random characters, newest first>"],
        "signing_keys_file": "p384.pem", "database_url": f"sqlite:///{tmp_path / 'a-file' / 'spc.db'}",
        "enrollment_ttl": "900", "databse_url": "x",
    }, [
        {"id": "shop", "origins": ["shop.example"], "api_keys": [API_KEY]},
        {"id": "shop", "origins": ["https://b.example"]},
    ])
    status, out, _ = run(capsys, "check", "--config", "issuer.toml", "--mount-path", "/spc/")
    assert status == 1
    assert all(line.startswith(("issuer.toml: ", "--mount-path: ")) for line in out.splitlines())
    lines = [line.removeprefix("issuer.toml: ") for line in out.splitlines()]
    expected = [
        "issuer origin 'http://bank.example' must use https",
        "rp_id is missing",
        "secret_keys: secret key #1 must be at least 32 characters long",
        "secret_keys: secret key #3 looks like a documentation placeholder",
        "merchants: merchant 'shop' origin 'shop.example' must look like https://host[:port]",
        "merchants: merchant ids must be unique",
        "enrollment_ttl must be a whole number",
        "signing_keys_file: signing keys must be EC P-256",
        "unknown key 'databse_url'",
        "--mount-path: mount_path '/spc/' must start with '/' and not end with one",
        "database_url: cannot open the database SQLite file",
    ]
    assert len(lines) == len(expected), out
    for start in expected:
        assert sum(line.startswith(start) for line in lines) == 1, (start, out)


def test_check_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """From SPC_* variables, through IssuerConfig.from_env: the same per-setting report, named by variable."""
    monkeypatch.setenv("SPC_RP_ID", "Bank.Example")
    monkeypatch.setenv("SPC_SECRET_KEYS", f"{SECRET},short")
    monkeypatch.setenv("SPC_MERCHANTS", json.dumps([{"id": "shop", "origins": ["https://shop.example/"]}]))
    monkeypatch.setenv("SPC_SIGNING_KEYS_FILE", str(tmp_path / "missing.pem"))
    monkeypatch.setenv("SPC_DATABASE_URL", f"postgresql://spc:secret-password@127.0.0.1:{free_port()}/spc")
    monkeypatch.setenv("SPC_CHALLENGE_TTL", "five minutes")
    status, out, err = run(capsys, "check")
    assert status == 1
    assert "secret-password" not in out + err
    assert out.splitlines() == [
        "SPC_ORIGIN is not set: set it to the issuer's origin, e.g. SPC_ORIGIN=https://bank.example",
        "SPC_RP_ID: rp_id must be a lower-case domain such as 'bank.example'",
        "SPC_RP_NAME is not set: set it to the name the authenticator shows, e.g. SPC_RP_NAME='Example Bank'",
        ("SPC_SECRET_KEYS: secret key #2 must be at least 32 characters long; generate a real one with "
        '`python -c "import secrets; print(secrets.token_urlsafe(48))"`'),
        "SPC_MERCHANTS: merchant 'shop' origin 'https://shop.example/' must not have a path, query or user part",
        (f"SPC_SIGNING_KEYS_FILE: cannot read signing keys file '{tmp_path / 'missing.pem'}': [Errno 2] No such "
        f"file or directory: '{tmp_path / 'missing.pem'}'; `spc-embed keys --signing-key-out FILE` writes a new "
        "P-256 key"),
        "SPC_CHALLENGE_TTL must be an integer",
        out.splitlines()[-1],
    ]
    assert out.splitlines()[-1].startswith("SPC_DATABASE_URL: cannot open the database postgresql://spc:***@")
    assert out.splitlines()[-1].endswith("is the server running and reachable at that host and port, and are the "
                                         "user, password and database right?")
    assert err.startswith("spc-embed: error: 8 problems in the configuration from the SPC_* environment variables")


def test_check_a_valid_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SPC_RP_ID", "bank.example")
    monkeypatch.setenv("SPC_RP_NAME", "Bank")
    monkeypatch.setenv("SPC_ORIGIN", "https://pay.bank.example")
    monkeypatch.setenv("SPC_SECRET_KEYS", SECRET)
    monkeypatch.setenv("SPC_MERCHANTS", json.dumps([{"id": "shop", "origins": ["https://shop.example"],
                                                     "api_keys": [API_KEY]}]))
    monkeypatch.setenv("SPC_SIGNING_KEYS_FILE", str(write_key(tmp_path / "key.pem")))
    status, out, err = run(capsys, "check")
    assert (status, err) == (0, "")
    assert out.startswith("spc-embed: the configuration from the SPC_* environment variables is valid\n")
    assert "sqlite:///spc_embed.db (schema version 2, opened)" in out  # the default database, here in tmp_path
    assert (tmp_path / "spc_embed.db").exists()


def test_check_an_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "issuer.toml").write_text('rp_id = "bank.example"\norigin = https://bank.example\n')
    status, out, _ = run(capsys, "check", "--config", "issuer.toml")
    assert status == 1
    assert out.startswith("issuer.toml is not valid TOML: Invalid value (at line 2, column 10)")
    status, out, _ = run(capsys, "check", "--config", "absent.toml")
    assert (status, out) == (1, "cannot read the configuration file 'absent.toml': No such file or directory\n")


# db init


def schema_tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_db_init_creates_the_schema_and_can_run_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    top, merchants = good_settings(tmp_path)
    write_toml(tmp_path / "issuer.toml", top, merchants)
    for _ in range(2):
        status, out, err = run(capsys, "db", "init", "--config", "issuer.toml")
        assert (status, err) == (0, "")
        assert out == f"spc-embed: the database sqlite:///{tmp_path / 'spc.db'} is ready (schema version 2)\n"
    assert "spc_schema" in schema_tables(tmp_path / "spc.db")
    with sqlite3.connect(tmp_path / "spc.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM spc_schema").fetchone() == (1,)


def test_db_init_needs_only_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """At deploy time the migration step may see the database URL and no secrets."""
    monkeypatch.setenv("SPC_DATABASE_URL", f"sqlite:///{tmp_path / 'from-env.db'}")
    assert run(capsys, "db", "init")[0] == 0
    assert "spc_schema" in schema_tables(tmp_path / "from-env.db")
    assert run(capsys, "db", "init", "--database-url", "sqlite:///flag.db")[0] == 0
    assert "spc_schema" in schema_tables(tmp_path / "flag.db")


def test_db_sweep_marks_expired_transactions_and_deletes_expired_challenges(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'spc.db'}"
    assert run(capsys, "db", "init", "--database-url", url)[0] == 0
    with sqlite3.connect(tmp_path / "spc.db") as conn:
        conn.execute("INSERT INTO spc_challenges (challenge, purpose, subject, user_id, expires_at) "
                     "VALUES ('old', 'registration', 's', 'u', 1), ('live', 'registration', 's', 'u', 4e9)")
    status, out, err = run(capsys, "db", "sweep", "--database-url", url)
    assert (status, err) == (0, "")
    assert out == (f"spc-embed: swept {url}: 0 pending transactions past their TTL marked expired, "
                   "1 expired challenges deleted\n")
    with sqlite3.connect(tmp_path / "spc.db") as conn:
        assert [row[0] for row in conn.execute("SELECT challenge FROM spc_challenges")] == ["live"]
    status, _, err = run(capsys, "db", "sweep", "--database-url", f"sqlite:///{tmp_path}/missing/spc.db")
    assert status == 1 and err.startswith("spc-embed: error: cannot open the database") and err.count("\n") == 1


@pytest.mark.parametrize("url, error", [
    ("sqlite:///{tmp}/a-file/spc.db", ("cannot open the database SQLite file {tmp}/a-file/spc.db (does its directory "
                                      "exist, and may this process write it?)")),
    ("sqlite:///:memory:", "database_url 'sqlite:///:memory:': spc-embed needs a SQLite file"),
    ("mysql://db/spc", "database_url 'mysql://db/spc' must be sqlite:/// or postgresql://"),
    ("postgresql://spc:pw@127.0.0.1:{port}/spc", "cannot open the database postgresql://spc:***@127.0.0.1:{port}/spc"),
])
def test_db_init_errors_are_one_line(url: str, error: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-file").write_text("")
    port = free_port()
    status, out, err = run(capsys, "db", "init", "--database-url", url.format(tmp=tmp_path, port=port))
    assert (status, out) == (1, "")
    assert err.startswith("spc-embed: error: " + error.format(tmp=tmp_path, port=port)), err
    assert err.count("\n") == 1


# usage


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "serve", "--port", "http")
    assert status == 2 and "spc-embed serve: error: argument --port: 'http' is not a TCP port (0-65535)" in err
    status, _, err = run(capsys, "serve", "--workers", "0")
    assert status == 2 and "argument --workers: '0' must be a whole number, 1 or more" in err
    status, _, err = run(capsys, "db")
    assert status == 2 and "spc-embed db: error: the following arguments are required: STEP" in err
    status, _, err = run(capsys)
    assert status == 2 and "spc-embed: error: the following arguments are required: COMMAND" in err


def test_python_dash_m_is_the_same_command(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "spc_embed", "--version"], check=False, capture_output=True,
                            text=True, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("spc-embed ")
    result = subprocess.run([sys.executable, "-m", "spc_embed", "check", "--config", "absent.toml"],
                            check=False, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr


# serve


def test_serve_refuses_a_bad_configuration_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    apply(tmp_path, {"origin": "http://bank.example"})
    status, out, err = run(capsys, "serve", "--config", "issuer.toml")
    assert (status, out) == (1, "")
    assert err == ("spc-embed: error: issuer.toml: issuer origin 'http://bank.example' must use https (http only "
                   "for localhost) (`spc-embed check` lists every problem)\n")
    apply(tmp_path, _not_a_directory)
    status, _, err = run(capsys, "serve", "--config", "issuer.toml")
    assert status == 1 and err.startswith("spc-embed: error: cannot open the database SQLite file")


def test_serve_refuses_a_port_in_use_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    top, merchants = good_settings(tmp_path)
    write_toml(tmp_path / "issuer.toml", top, merchants)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, out, err = run(capsys, "serve", "--config", "issuer.toml", "--port", str(port))
    assert (status, out) == (1, "")
    assert err == f"spc-embed: error: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_the_app_factory_mounts_the_issuer_and_runs_its_lifespan(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What each of `serve --workers N`'s workers builds: the config file and mount path from the environment."""
    top, merchants = good_settings(tmp_path)
    write_toml(tmp_path / "issuer.toml", top, merchants)
    monkeypatch.setenv("SPC_CONFIG_FILE", str(tmp_path / "issuer.toml"))
    monkeypatch.setenv("SPC_MOUNT_PATH", "/spc")
    app = cli.create_app()
    # The start-up's objects are out of the collector's reach, as `serve` leaves them; given back for the tests.
    assert gc.get_freeze_count() > 10_000
    gc.unfreeze()
    with TestClient(app) as client:
        assert client.get("/spc/.well-known/jwks.json").status_code == 200
        assert client.get("/.well-known/jwks.json").status_code == 404
        answer = client.post("/spc/transaction/initialize", headers={"apiKey": API_KEY}, json={
            "user_id": "alice", "transaction_id": "t1",
            "transaction_data": {"amount": "1.00", "currency": "EUR", "payee_name": "Shop"},
        })
        assert answer.status_code == 200, answer.text  # the store was opened by the outer app's lifespan


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_runs_uvicorn(workers: int, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    top, merchants = good_settings(tmp_path)
    port = free_port()
    top.update(rp_id="localhost", origin=f"http://localhost:{port}", signing_keys_file="key.pem")
    write_key(tmp_path / "key.pem", key)
    write_toml(tmp_path / "issuer.toml", top, merchants)
    process = subprocess.Popen(
        [sys.executable, "-m", "spc_embed", "serve", "--config", "issuer.toml", "--port", str(port),
         "--mount-path", "/spc", "--workers", str(workers), "--no-access-log"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        wait_until_serving(process, port)
        deadline = time.monotonic() + 20
        while True:  # with workers, the parent listens before the workers' apps have started
            try:
                jwks = httpx.get(f"http://127.0.0.1:{port}/spc/.well-known/jwks.json", timeout=5)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert jwks.status_code == 200
        (published,) = jwks.json()["keys"]
        assert jwt.PyJWK(published).key.public_numbers() == key.public_key().public_numbers()
    finally:
        log = stop(process)
    assert f"serving the issuer http://localhost:{port}/spc (configured from issuer.toml)" in log
    assert f"with {workers} worker(s)" in log
    assert "Traceback" not in log and "Application shutdown complete" in log


# The README's "Run it as a service", as written


def test_the_readme_service_steps_run_as_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """keys -> issuer.toml -> check -> db init as the README has them; serve's line parses."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Run it as a service", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(sh|toml)\n(.*?)```", section, re.DOTALL)
    commands = [shlex.split(line.split("#", 1)[0]) for kind, code in blocks if kind == "sh"
                for line in code.splitlines() if line.startswith("spc-embed ")]
    assert [argv[1] for argv in commands] == ["keys", "check", "db", "serve"]
    keys_argv, check_argv, db_argv, serve_argv = (argv[1:] for argv in commands)

    status, printed, _ = run(capsys, *keys_argv)
    assert status == 0 and (tmp_path / "jwt-signing-key.pem").is_file()
    secret, api_key = (re.findall(rf'^{key} = \["(.+?)"\]', printed, re.MULTILINE)[0]
                       for key in ("secret_keys", "api_keys"))
    (toml,) = [code for kind, code in blocks if kind == "toml"]
    toml = toml.replace("<printed by spc-embed keys>", secret, 1).replace("<printed by spc-embed keys>", api_key, 1)
    # The one change: a database this test may write.
    toml = toml.replace("sqlite:////var/lib/spc-embed/spc.db", f"sqlite:///{tmp_path / 'spc.db'}")
    (tmp_path / "issuer.toml").write_text(toml)

    status, out, err = run(capsys, *check_argv)
    assert (status, err) == (0, ""), out
    assert "  issuer     https://bank.example/spc (rp_id bank.example, 'Example Bank')" in out
    assert run(capsys, *db_argv)[0] == 0
    assert "spc_schema" in schema_tables(tmp_path / "spc.db")
    served = cli.build_parser().parse_args(serve_argv)
    assert (served.handler, served.config, served.mount_path, served.workers) == (cli.serve, "issuer.toml", "/spc", 2)
