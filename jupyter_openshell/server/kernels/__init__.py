"""The kernels service of the openshell server extension: which sandbox a running kernel lives in.
Its handlers must never skip authentication or the ownership check.
"""
