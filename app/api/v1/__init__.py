"""Meshy `/openapi/v1` resources."""
