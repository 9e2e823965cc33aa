"""The sandboxes service of the openshell server extension."""
