"""The HTTP status server: a child process that shows what flows through Bucky (see server.py)."""
