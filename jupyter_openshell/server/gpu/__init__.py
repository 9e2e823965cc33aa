"""The gpu service of the openshell server extension."""
