"""The README's deployment steps, followed word for word by ``scripts/deploy-check`` from a fresh
database to a login over HTTPS through nginx (PostgreSQL, Redis, nginx; the script says what it
stands in for: system paths in a temporary folder, sudo/systemctl/apt-get shims)."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from server_support import ROOT
from support import BACKEND

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(BACKEND != "postgresql", reason="the deployment runs on PostgreSQL "
                                                                 "(MORALBANK_TEST_DB=postgresql runs it)")]


def test_the_readme_deployment_steps_end_in_a_login_over_https():
    if os.geteuid() != 0:
        pytest.skip("scripts/deploy-check runs the steps' sudo as root (runuser -u postgres)")
    if shutil.which("nginx") is None and not os.path.exists("/usr/sbin/nginx"):
        pytest.skip("nginx is not installed (.ci/run installs it)")
    # its own session: no controlling terminal, so create-user reads the password from stdin
    result = subprocess.run([str(ROOT / "scripts" / "deploy-check")], cwd=ROOT, capture_output=True, text=True,
                            timeout=240, stdin=subprocess.DEVNULL, start_new_session=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for line in ("created user", "moralbank-verify.service ran", "consistent", "moralbank-backup.service ran",
                 '"status":"ok"', "logged in as the admin over HTTPS through nginx", "deploy-check passed"):
        assert line in output, (line, output[-4000:])
