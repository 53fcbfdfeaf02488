"""Reference external worker."""
