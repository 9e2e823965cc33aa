"""`openshell cluster up|down|status`: a single-node K3s in Docker for the Kubernetes backend on one
machine (see `_k3s`). This module must never import the docker SDK or the kubernetes client eagerly.
"""
