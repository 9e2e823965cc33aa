"""The OpenShell kernel: ipykernel inside a sandbox, reached over ZMQ ipc sockets in a bind-mounted dir.

`provisioner.OpenShellProvisioner` is the jupyter_client provisioner; `session.KernelSandbox` is one
sandbox running one kernel (also used by `%%sandbox`); `pool` keeps warm ones; `kernelspec` installs the
kernelspec. Nothing is imported here so that the entry point stays cheap.
Nothing here may ever run kernel code outside a sandbox.
"""
