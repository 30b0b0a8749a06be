"""`logkeep login` / `logout` against a server that requires credentials, and what the
other API commands send."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import orjson
import pytest

from logkeep.config import Settings
from logkeep.credentials import api_key
from tests.conftest import served
from tests.integration.test_cli_read import cli_env, run_cli

# Every test here starts `logkeep` processes.
pytestmark = pytest.mark.slow

ADMIN_PASSWORD = b"test-admin-pw\n"  # the test seed's (logkeep.db.seed.TEST_PASSWORDS)


async def test_login_stores_a_private_session_that_the_api_commands_send(
    settings: Settings, tmp_path: Path
) -> None:
    secured = settings.model_copy(update={"auth_required": True})
    config_home = tmp_path / "config"
    credentials = config_home / "logkeep" / "credentials.json"
    async with served(secured) as base:
        env = cli_env(base, config_home)

        # Without credentials: the 401 says how to get some.
        code, _, refused = await run_cli(base, "query", env=env)
        assert code == 1 and "401" in refused
        assert "logkeep login" in refused and "LOGKEEP_API_TOKEN" in refused

        # A wrong password: refused, nothing stored.
        code, _, wrong = await run_cli(
            base, "login", "--username", "admin", "--password-stdin", env=env, stdin=b"nope\n"
        )
        assert code == 1 and "401" in wrong and not credentials.exists()

        code, out, err = await run_cli(
            base, "login", "-u", "admin", "--password-stdin", env=env, stdin=ADMIN_PASSWORD
        )
        assert code == 0, err
        assert "logged in" in out and "admin" in out
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        assert stat.S_IMODE(credentials.parent.stat().st_mode) == 0o700
        token = orjson.loads(credentials.read_bytes())["sessions"][api_key(base)]["token"]

        # Every API command sends it.
        code, table, err = await run_cli(base, "query", "--source", "app_errors", env=env)
        assert code == 0, err
        assert "app_errors test entry" in table
        code, summary, err = await run_cli(base, "stats", "--json", env=env)
        assert code == 0, err and orjson.loads(summary)["sources"]
        code, out, err = await run_cli(
            base,
            "ingest",
            "-",
            "--source",
            "app_errors",
            env=env,
            stdin=b"sent by a logged-in ingest\n",
        )
        assert code == 0, err
        assert "1 accepted" in out
        # LOGKEEP_API_TOKEN, when set, is sent instead.
        overridden = env | {"LOGKEEP_API_TOKEN": "lks_not-a-session"}
        code, _, err = await run_cli(base, "stats", env=overridden)
        assert code == 1 and "401" in err

        code, out, err = await run_cli(base, "logout", env=env)
        assert code == 0, err
        assert "logged out" in out and not credentials.exists()
        # The session is over on the server too, not just forgotten here.
        async with httpx.AsyncClient(base_url=base) as http:
            me = await http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 401
        code, _, refused = await run_cli(base, "query", env=env)
        assert code == 1 and "401" in refused
        code, out, _ = await run_cli(base, "logout", env=env)
        assert code == 0 and "not logged in" in out


async def test_login_needs_a_username_when_the_password_is_piped(
    settings: Settings, tmp_path: Path
) -> None:
    async with served(settings) as base:
        code, _, err = await run_cli(
            base, "login", "--password-stdin", env=cli_env(base, tmp_path), stdin=ADMIN_PASSWORD
        )
    assert code == 2 and "--username is required" in err
    assert not (tmp_path / "logkeep").exists()
