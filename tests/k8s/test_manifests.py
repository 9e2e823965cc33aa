"""The rendered Kubernetes objects: valid against the API schemas of the pinned Kubernetes version
(`kubernetes-validate`, strict: unknown fields are errors), and holding every security invariant
(`_invariants.check`). The mutation tests take the renderer and remove ONE invariant at a time (a
security block, a field, the NetworkPolicy's deny, the Secret isolation ...): each must be reported, so
a renderer that loses any of them fails here. Control: the unmutated renderer has no violation, and
the validator rejects a manifest with a misspelt field.
"""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest

from jupyter_openshell.runtime._resources import Limits
from jupyter_openshell.runtime.kubernetes import _invariants, _manifests
from jupyter_openshell.runtime.kubernetes._settings import K8S_VERSION, KubeSettings

SETTINGS = KubeSettings(server_id="test0001")
VARIANTS = {
    "default": SETTINGS,
    "localhost-seccomp": SETTINGS.with_changes(seccomp="Localhost"),
    "gvisor": SETTINGS.with_changes(runtime_class="gvisor", namespace="team-a"),
}


def _all(settings: KubeSettings) -> list[dict]:
    rendered = _manifests.render(settings)
    return rendered["install"] + rendered["sandbox-example"]


def _sandbox(settings: KubeSettings = SETTINGS, **kw) -> list[dict]:
    args = dict(
        name="agent_1.x",
        instance="abcd1234",
        created=1.5,
        policy_text="network: {}\n",
        token="t" * 43,
        limits=Limits(cpu=0.5, memory=1 << 30, pids=64, disk=64 << 20, timeout=3600),
        gpu=True,
        proxy="10.43.0.10:3128",
        owner={"apiVersion": "v1", "kind": "ConfigMap", "name": "a", "uid": "u-1"},
    )
    args.update(kw)
    return _manifests.sandbox_objects(settings, **args)


def _ids(objs: list[dict]) -> list[str]:
    return [f"{o['kind']}/{o['metadata']['name']}" for o in objs]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendered_manifest_is_valid_for_the_pinned_kubernetes(variant):
    objs = _all(VARIANTS[variant]) + _sandbox(VARIANTS[variant])
    assert len(objs) >= 17
    for obj in objs:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_validator_rejects_a_misspelt_field_control():
    pod = copy.deepcopy(_sandbox()[2])
    pod["spec"]["automountServiceAccountTokn"] = False
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    pod = copy.deepcopy(_sandbox()[2])
    pod["spec"]["securityContext"]["runAsNonRoot"] = "yes"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_objects_hold_every_invariant(variant):
    assert _invariants.check(_all(VARIANTS[variant]) + _manifests.install_objects(VARIANTS[variant])) == []


def test_sandbox_pod_from_a_policy():
    secret, config, pod = _sandbox()
    spec = pod["spec"]
    container = spec["containers"][0]
    assert spec["activeDeadlineSeconds"] == 3600
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": str(1 << 30), "nvidia.com/gpu": "1"}
    assert {v["name"]: v for v in spec["volumes"]}["tmp"]["emptyDir"] == {
        "medium": "Memory",
        "sizeLimit": str(64 << 20),
    }
    assert pod["metadata"]["labels"]["openshell.io/sandbox"] == "agent_1.x"
    assert pod["metadata"]["name"].startswith("sb-agent-1-x-") and len(pod["metadata"]["name"]) <= 63
    assert config["data"]["token_sha256"] != "t" * 43 and "t" * 43 not in str(config)
    assert all(o["metadata"]["ownerReferences"][0]["uid"] == "u-1" for o in (secret, config, pod))
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HTTPS_PROXY"] == "http://openshell:$(OPENSHELL_TOKEN)@10.43.0.10:3128"
    assert env["SSL_CERT_FILE"] == "/etc/openshell/ca-bundle.pem"
    # names that differ only in characters a DNS label cannot hold stay apart
    assert _sandbox(name="a_b")[2]["metadata"]["name"] != _sandbox(name="a.b")[2]["metadata"]["name"]


def _wrap(fn_name: str, mutate):
    """Replace `_manifests.<fn_name>` with itself followed by `mutate(result)`."""
    original = getattr(_manifests, fn_name)

    def wrapped(*args, **kwargs):
        out = original(*args, **kwargs)
        mutate(out)
        return out

    return fn_name, wrapped


def _pod_spec(pod):
    return pod["spec"]


def _container(pod):
    return pod["spec"]["containers"][0]


def _volume(pod, name):
    return next(v for v in pod["spec"]["volumes"] if v["name"] == name)


def _drop(mapping, key):
    mapping.pop(key)


MUTATIONS = {
    # the security blocks: each field taken out of the renderer
    **{f"pod-flag-{k}": ("const", "SANDBOX_POD_FLAGS", k) for k in _manifests.SANDBOX_POD_FLAGS},
    **{f"container-{k}": ("const", "CONTAINER_SECURITY", k) for k in _manifests.CONTAINER_SECURITY},
    # structural changes, each a renderer function whose output loses one guarantee
    "pod-runAsNonRoot": ("fn", *_wrap("pod_security", lambda sc: sc.pop("runAsNonRoot"))),
    "pod-runs-as-root": ("fn", *_wrap("pod_security", lambda sc: sc.update(runAsUser=0))),
    "seccomp-unconfined": ("fn", *_wrap("seccomp_profile", lambda p: p.update(type="Unconfined"))),
    "container-adds-a-capability": (
        "fn",
        *_wrap("container_security", lambda sc: sc["capabilities"].update(add=["NET_RAW"])),
    ),
    "tmp-not-size-limited": ("fn", *_wrap("tmp_volume", lambda v: v["emptyDir"].pop("sizeLimit"))),
    "tmp-on-disk": ("fn", *_wrap("tmp_volume", lambda v: v["emptyDir"].pop("medium"))),
    "hostPath-volume": (
        "fn",
        *_wrap(
            "sandbox_pod",
            lambda p: p["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/var/run"}}),
        ),
    ),
    "host-port": (
        "fn",
        *_wrap(
            "sandbox_pod", lambda p: _container(p).update(ports=[{"containerPort": 50001, "hostPort": 50001}])
        ),
    ),
    "channel-writable": (
        "fn",
        *_wrap("sandbox_pod", lambda p: _container(p)["volumeMounts"][2].pop("readOnly")),
    ),
    "extra-writable-mount": (
        "fn",
        *_wrap(
            "sandbox_pod",
            lambda p: (
                p["spec"]["volumes"].append({"name": "x", "emptyDir": {}}),
                _container(p)["volumeMounts"].append({"name": "x", "mountPath": "/opt"}),
            ),
        ),
    ),
    "no-memory-limit": (
        "fn",
        *_wrap("sandbox_pod", lambda p: _container(p)["resources"]["limits"].pop("memory")),
    ),
    "key-secret-in-sandbox": (
        "fn",
        *_wrap(
            "sandbox_pod",
            lambda p: p["spec"]["volumes"].append(
                {"name": "keys", "secret": {"secretName": _manifests.KEYS_SECRET}}
            ),
        ),
    ),
    "ca-key-as-sandbox-env": (
        "fn",
        *_wrap(
            "sandbox_pod",
            lambda p: _container(p)["env"].append(
                {"name": "CA", "valueFrom": {"secretKeyRef": {"name": _manifests.CA_SECRET, "key": "x"}}}
            ),
        ),
    ),
    "default-service-account": ("fn", *_wrap("sandbox_pod", lambda p: p["spec"].pop("serviceAccountName"))),
    "egress-allow-all": ("fn", *_wrap("sandbox_network_policy", lambda n: n["spec"].update(egress=[{}]))),
    "egress-not-denied": (
        "fn",
        *_wrap("sandbox_network_policy", lambda n: n["spec"].update(policyTypes=["Ingress"], egress=[])),
    ),
    "egress-dns": (
        "fn",
        *_wrap(
            "sandbox_network_policy",
            lambda n: n["spec"]["egress"].append(
                {"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "UDP", "port": 53}]}
            ),
        ),
    ),
    "egress-any-port-to-proxy": (
        "fn",
        *_wrap("sandbox_network_policy", lambda n: n["spec"]["egress"][0].pop("ports")),
    ),
    "ingress-from-anywhere": (
        "fn",
        *_wrap("sandbox_network_policy", lambda n: n["spec"]["ingress"][0].pop("from")),
    ),
    "ingress-any-port": (
        "fn",
        *_wrap(
            "sandbox_network_policy",
            lambda n: n["spec"]["ingress"][0]["ports"][0].update(port=1, endPort=65535),
        ),
    ),
    "network-policy-selects-nothing": (
        "fn",
        *_wrap(
            "sandbox_network_policy",
            lambda n: n["spec"].update(podSelector={"matchLabels": {"app": "other"}}),
        ),
    ),
    "proxy-pod-root-capable": (
        "fn",
        *_wrap(
            "proxy_deployment",
            lambda d: d["spec"]["template"]["spec"]["containers"][0]["securityContext"].update(
                allowPrivilegeEscalation=True
            ),
        ),
    ),
}


def _install_mutations(monkeypatch, kind, *rest):
    if kind == "const":
        name, key = rest
        monkeypatch.setattr(
            _manifests, name, {k: v for k, v in getattr(_manifests, name).items() if k != key}
        )
    else:
        fn_name, wrapped = rest
        monkeypatch.setattr(_manifests, fn_name, wrapped)


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_removing_an_invariant_from_the_renderer_is_caught(monkeypatch, mutation):
    _install_mutations(monkeypatch, *MUTATIONS[mutation])
    violations = _invariants.check(_all(SETTINGS) + _sandbox())
    assert violations, f"renderer without {mutation} passed the invariant check"


def test_object_level_invariants_are_caught():
    """Invariants of objects other than pods: the sandboxes' ServiceAccount and the proxy's Role."""
    objs = _all(SETTINGS)
    sa = next(
        o for o in objs if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == "openshell-sandbox"
    )
    role = next(o for o in objs if o["kind"] == "Role" and o["metadata"]["name"] == "openshell-proxy")
    sa["automountServiceAccountToken"] = True
    assert any("automountServiceAccountToken" in v for v in _invariants.check(objs))
    sa["automountServiceAccountToken"] = False
    role["rules"][0]["verbs"].append("update")
    assert any("only read" in v for v in _invariants.check(objs))
    role["rules"][0]["verbs"].pop()
    binding = next(
        o for o in objs if o["kind"] == "RoleBinding" and o["metadata"]["name"] == "openshell-proxy"
    )
    binding["subjects"].append({"kind": "ServiceAccount", "name": "openshell-sandbox", "namespace": "x"})
    assert any("bound" in v for v in _invariants.check(objs))
