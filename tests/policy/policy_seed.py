"""The seed policy documents from issue 2, verbatim, shared by the policy-engine tests."""

from __future__ import annotations

SEED_NETWORK = """\
network:
  egress:
    - host: "api.example.com"
      paths:
        - path: "/v1/users/*"
          methods: ["GET"]
        - path: "/v1/data"
          methods: ["GET", "HEAD"]
      action: allow
    - action: deny
"""

SEED_INFERENCE = """\
inference:
  routes:
    - caller_pattern: ".*"
      backend:
        url: "https://api.openai.com/v1"
        auth:
          type: bearer
          token_from_secret: "openai-api-key"
      strip_caller_auth: true
"""

SEED = SEED_NETWORK + SEED_INFERENCE
