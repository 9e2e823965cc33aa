"""The sandboxes service of the openshell server extension.
Its handlers must never skip authentication or the ownership check.
"""
