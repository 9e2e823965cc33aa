"""The policies service of the openshell server extension."""
