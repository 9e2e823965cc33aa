"""The openapi service of the openshell server extension."""
