"""The cleancache frontend and its backends."""
