"""Meshy `/openapi/v2` resources."""
