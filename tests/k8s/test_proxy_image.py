"""The in-cluster proxy's image (`openshell image build --proxy`): built from the default sandbox image
with this package and the proxy's dependencies, it runs `python3 -I -m jupyter_openshell proxy` as the
Deployment's non-root uid on a read-only root filesystem, and the proxy starts and serves in it (checked
with no network: its own loopback). Nothing of the image runs on the host.
"""

from __future__ import annotations

import pytest

SCRIPT = """
set -e
printf 'network:\\n  egress:\\n    - action: deny\\n' > /state/default.yaml
python3 -I -m jupyter_openshell proxy --policy /state/default.yaml --state-dir /state \\
    --listen 127.0.0.1:3128 --kube-namespace openshell --kubeconfig /nonexistent >/state/log 2>&1 &
for i in $(seq 600); do [ -f /state/run/proxy.json ] && break; sleep 0.1; done
echo "status=$(curl -sS -o /dev/null -w '%{http_code}' -x http://127.0.0.1:3128 http://example.com/)"
cat /state/log
"""


@pytest.fixture(scope="module")
def proxy_image(tmp_path_factory):
    from jupyter_openshell.runtime.kubernetes import _proxy_image
    from jupyter_openshell.testing.docker_engine import default_image, engine

    why = engine(tmp_path_factory.mktemp("dockerd-proxy-image"))
    if why is not None:
        pytest.skip(f"no Docker Engine: {why}")
    default_image()
    return _proxy_image.build(log=lambda _: None)


def test_proxy_runs_in_its_image_as_the_deployment_runs_it(proxy_image):
    import docker

    from jupyter_openshell.runtime.kubernetes._settings import PROXY_UID

    container = docker.from_env().containers.run(
        proxy_image,
        ["-c", SCRIPT],
        entrypoint=["sh"],
        user=f"{PROXY_UID}:{PROXY_UID}",
        network_mode="none",
        read_only=True,
        tmpfs={"/state": "", "/tmp": ""},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        detach=True,
    )
    try:
        container.wait(timeout=120)
        out = container.logs().decode()
    finally:
        container.remove(force=True)
    assert "status=403" in out, out  # its deny-all host caller: the proxy runs and decides
