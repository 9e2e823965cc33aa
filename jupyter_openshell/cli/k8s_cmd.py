"""`openshell k8s render|install`: the Kubernetes backend's manifests, printed for review and GitOps, or
applied to the cluster of the kubeconfig in force.

A thin layer over `runtime.kubernetes` (`_manifests.render`, `_install.install`). `render` prints no key
material (the CA and key Secrets are empty there; `install` fills the CA and never overwrites keys). It
must never print a secret.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..runtime import SandboxError

USER_ERRORS = (SandboxError, ValueError)


def _settings(args: argparse.Namespace):
    from ..runtime.kubernetes import _settings

    return _settings.load().with_changes(
        namespace=args.namespace,
        seccomp=args.seccomp,
        runtime_class=args.runtime_class,
        image=args.image,
        proxy_image=args.proxy_image,
        kubeconfig=getattr(args, "kubeconfig", None),
    )


def _yaml(objects: list[dict], title: str) -> str:
    import yaml

    head = f"# {title}\n# rendered by `openshell k8s render` (jupyter-openshell); review before applying\n"
    return head + "".join("---\n" + yaml.safe_dump(o, sort_keys=False, width=110) for o in objects)


def _render(args: argparse.Namespace) -> int:
    from ..runtime.kubernetes import _invariants, _manifests

    settings = _settings(args)
    rendered = _manifests.render(settings)
    violations = _invariants.check(rendered["install"] + rendered["sandbox-example"])
    if violations:
        raise SandboxError("the rendered objects break the invariants:\n  " + "\n  ".join(violations))
    titles = {
        "install": f"namespace {settings.namespace}: what `openshell k8s install` applies (the CA and "
        "keys Secrets are empty here: install fills the CA; add keys with kubectl)",
        "sandbox-example": "per sandbox, made by the backend (an example: placeholders for the "
        "credential, the proxy's ClusterIP and the anchor's uid)",
    }
    if args.output is None:
        sys.stdout.write("\n".join(_yaml(rendered[k], titles[k]) for k in ("install", "sandbox-example")))
        return 0
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for key, objects in rendered.items():
        (out / f"{key}.yaml").write_text(_yaml(objects, titles[key]))
    from ..runtime.docker import _profile

    (out / "sandbox-seccomp.json").write_text(json.dumps(_profile.profile(), indent=1) + "\n")
    print(
        f"wrote {out}/install.yaml, sandbox-example.yaml and sandbox-seccomp.json (the Localhost seccomp "
        f"profile: copy it to /var/lib/kubelet/seccomp/{_manifests.LOCALHOST_PROFILE} on every node to use "
        "--seccomp Localhost)"
    )
    return 0


def _install(args: argparse.Namespace) -> int:
    from ..runtime.kubernetes import _install

    _install.install(_settings(args))
    return 0


def register(parser: argparse.ArgumentParser, argv: Sequence[str] = ()) -> None:
    sub = parser.add_subparsers(dest="k8s_command", required=True, metavar="ACTION")
    for name, func, text in (
        ("render", _render, "print every manifest (YAML) for review or GitOps"),
        ("install", _install, "apply the namespace's objects to the cluster"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--namespace", help="namespace (default: the setting, 'openshell')")
        p.add_argument(
            "--seccomp",
            choices=["RuntimeDefault", "Localhost"],
            help="seccomp profile of the pods (Localhost: the project's, installed on the nodes)",
        )
        p.add_argument("--runtime-class", help="runtimeClassName of sandbox pods (e.g. gvisor, kata)")
        p.add_argument("--image", help="sandbox image")
        p.add_argument("--proxy-image", help="the proxy's image")
        if name == "render":
            p.add_argument("-o", "--output", metavar="DIR", help="write the files to DIR instead of printing")
        else:
            p.add_argument("--kubeconfig", help="kubeconfig (default: the backend's)")
        p.set_defaults(func=func)
