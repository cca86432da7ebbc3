"""The terminal surface: the engine's events rendered with rich, the consultant's words read
from the keyboard or a pipe."""
