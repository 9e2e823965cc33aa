"""The policy-editor service of the openshell server extension (validate, presets, rule variants).
Its handlers must never skip authentication, and never write a policy (applying goes through PUT policies).
"""
