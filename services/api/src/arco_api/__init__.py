"""The arco API service."""
