"""The openapi service of the openshell server extension.
Its handler must never be served without authentication.
"""
