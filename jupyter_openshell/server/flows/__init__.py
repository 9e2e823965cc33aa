"""The flows service of the openshell server extension."""
