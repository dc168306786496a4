"""runners/: the scripts parse (and pass shellcheck where it is installed), the systemd unit keeps the properties
runners/SECURITY.md promises, and each ARC scale set gives a runner exactly one GPU of its type."""

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

RUNNERS = Path(__file__).resolve().parent.parent / "runners"
SCRIPTS = sorted(RUNNERS.glob("*.sh"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse_and_pass_shellcheck(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    if shutil.which("shellcheck"):  # actionlint uses it too when present; CI images have it
        done = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout


def test_setup_refuses_bad_arguments_before_touching_anything():
    done = subprocess.run(["bash", str(RUNNERS / "setup-runner.sh"), "--bogus"], capture_output=True, text=True)
    assert done.returncode == 2 and "--admin-token-file" in done.stdout  # the usage text


@pytest.mark.skipif(subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0",
                    reason="setup-runner.sh checks its arguments after checking it runs as root")  # fmt: skip
@pytest.mark.parametrize(("args", "why"), [
    (["--url", "https://github.com/OWNER/REPO", "--runner-group", "perfci-gpu"], "--url https://github.com/ORG"),
    (["--url", "https://github.com/ORG"], "--runner-group NAME is required"),
])  # fmt: skip
def test_setup_registers_only_organization_runners_into_a_runner_group(args, why):
    done = subprocess.run(["bash", str(RUNNERS / "setup-runner.sh"), *args, "--admin-token-file", "/dev/null"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2 and why in done.stderr


def test_systemd_unit_is_ephemeral_hardened_and_kills_leftovers():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(RUNNERS / "perfci-runner.service")
    service = unit["Service"]
    assert service["User"] == "perfci-runner" and service["ExecStartPre"].startswith("+")  # root only to register
    assert service["KillMode"] == "control-group" and service["Restart"] == "always"
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert "PERFCI_CACHE=/var/lib/perfci/cache" in service["Environment"] and "HF_HOME=" in service["Environment"]
    register = (RUNNERS / "register.sh").read_text()
    assert "--ephemeral" in register and '--runnergroup "$RUNNER_GROUP"' in register  # runners/SECURITY.md
    assert "/orgs/$org/actions/runners/registration-token" in register  # only an organization's runner has a group


@pytest.mark.parametrize("label", ["h100", "h200", "b200"])
def test_arc_scale_set_per_gpu_type(label):
    values = yaml.safe_load((RUNNERS / "arc" / f"values-{label}.yaml").read_text())
    assert values["runnerScaleSetName"] == label and values["minRunners"] == 0
    (container,) = values["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["securityContext"]["runAsNonRoot"] is True
    assert {e["name"] for e in container["env"]} == {"PERFCI_CACHE", "HF_HOME"}
    assert label.upper() in values["template"]["spec"]["nodeSelector"]["nvidia.com/gpu.product"]
