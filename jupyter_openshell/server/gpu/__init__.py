"""The gpu service of the openshell server extension. Its handlers must never skip authentication."""
