"""`jupyter openshell install`: the kernelspec lands where asked and selects the OpenShell provisioner;
the packaged kernelspec and config file say the same."""

from __future__ import annotations

import json
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.provisioning import KernelProvisionerFactory

from jupyter_openshell.cli.jupyter_app import main

ROOT = Path(__file__).resolve().parents[2]


def test_install_into_a_prefix_selects_the_openshell_provisioner(tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text("network:\n  egress: []\n")
    assert main(["install", "--prefix", str(tmp_path), "--policy", str(policy), "--pool-size", "2"]) == 0
    spec_dir = tmp_path / "share" / "jupyter" / "kernels" / "openshell"
    spec = json.loads((spec_dir / "kernel.json").read_text())
    assert spec["display_name"] == "Python 3 (OpenShell sandbox)" and spec["interrupt_mode"] == "message"
    prov = spec["metadata"]["kernel_provisioner"]
    assert prov["provisioner_name"] == "openshell-provisioner"
    assert prov["config"]["policy_file"] == str(policy) and prov["config"]["pool_size"] == 2
    ks = KernelSpecManager(kernel_dirs=[str(spec_dir.parent)]).get_kernel_spec("openshell")
    assert KernelProvisionerFactory.instance().is_provisioner_available(ks)
    assert "installed kernelspec 'openshell'" in capsys.readouterr().out


def test_packaged_kernelspec_and_server_config():
    spec = json.loads((ROOT / "kernelspec" / "openshell" / "kernel.json").read_text())
    assert spec["metadata"]["kernel_provisioner"]["provisioner_name"] == "openshell-provisioner"
    assert spec["interrupt_mode"] == "message"
    config = json.loads(
        (ROOT / "jupyter-config" / "jupyter_server_config.d" / "jupyter_openshell.json").read_text()
    )
    assert config["ServerApp"]["jpserver_extensions"]["jupyter_openshell"] is True
